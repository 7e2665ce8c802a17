// Every big write goes to the page cache 64 KiB at a time. Linux (ext4 on recent kernels) sizes the page cache's
// folios by the length of a write, and a 1 MiB folio is a high-order allocation: on a VM that hands freed memory
// back to its host (free page reporting), those come from blocks the host has to fault in again. Measured on such
// a VM (Firecracker, Linux 6.18): 1 GB into a new file in 1 MiB writes 2.2 s, in 64 KiB writes 0.26 s (`cp`
// 0.34 s); at 128 KiB already 0.9 s. Elsewhere 64 KiB writes cost a few more system calls, nothing measurable.
import type { FileHandle } from 'node:fs/promises'
import { writeSync } from 'node:fs'

export const WRITE_PIECE_BYTES = 64 * 1024

/** Writes `length` bytes of `buffer` at `position` of `fd`, in pieces of at most WRITE_PIECE_BYTES. */
export function writeAllSync (fd: number, buffer: Uint8Array, length: number, position: number): void {
  for (let done = 0; done < length;) {
    done += writeSync(fd, buffer, done, Math.min(WRITE_PIECE_BYTES, length - done), position + done)
  }
}

/** The same through a FileHandle, without blocking the thread. */
export async function writeAll (file: FileHandle, buffer: Uint8Array, length: number, position: number): Promise<void> {
  for (let done = 0; done < length;) {
    const { bytesWritten } = await file.write(buffer, done, Math.min(WRITE_PIECE_BYTES, length - done), position + done)
    done += bytesWritten
  }
}
