/* Test-harness shim for Wine 8.0, not shipped: Rust's std on Windows draws its
 * random seed from ProcessPrng (bcryptprimitives.dll, Windows 10+), which Wine 8.0
 * lacks. This DLL, placed next to the .exe, forwards it to RtlGenRandom
 * (SystemFunction036 in advapi32), which Wine has. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
