#!/usr/bin/env bash
# Runs the test suite as Windows programs under Wine: cross-built with mingw for
# x86_64-pc-windows-gnu, each test binary (and the tcpdemo.exe it starts) run by wine.
#
#   bash tests/wine.sh                 # the whole suite, about two minutes
#   bash tests/wine.sh --test bench    # arguments go to cargo test
#
# Installs wine and mingw with apt when they are missing. Loopback only, like the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
missing=()
command -v wine >/dev/null || missing+=(wine wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

export WINEPREFIX=${WINEPREFIX:-$PWD/target/wine}
export WINEDEBUG=${WINEDEBUG:--all}
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    echo "creating the Wine prefix $WINEPREFIX" >&2
    # wineboot makes the prefix but not its parent (target/ on a fresh clone).
    mkdir -p "$(dirname "$WINEPREFIX")"
    if ! log=$(wineboot --init 2>&1); then
        echo "wineboot could not create the Wine prefix $WINEPREFIX:" >&2
        echo "$log" >&2
        exit 1
    fi
fi

# Rust's std (1.78 and later) imports ProcessPrng from bcryptprimitives.dll, which Debian 12's
# Wine 8.0 lacks, so no Rust program starts under it. A stand-in on top of RtlGenRandom
# (SystemFunction036 in advapi32) does.
system32=$WINEPREFIX/drive_c/windows/system32
if [ ! -f "$system32/bcryptprimitives.dll" ] ||
    ! grep -q ProcessPrng "$system32/bcryptprimitives.dll" 2>/dev/null; then
    echo "building the bcryptprimitives.dll stand-in" >&2
    src=$(mktemp -d)
    cat >"$src/bcryptprimitives.c" <<'C'
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
C
    x86_64-w64-mingw32-gcc -shared -O2 -o "$src/bcryptprimitives.dll" "$src/bcryptprimitives.c" -ladvapi32
    cp "$src/bcryptprimitives.dll" "$system32/"
    rm -rf "$src"
fi

# Wine passes the environment on: tests skip what is shown to be Wine's fault, saying so.
TCPDEMO_UNDER_WINE=1 CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine \
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
    cargo test --locked --target "$TARGET" "$@"
