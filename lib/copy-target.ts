// The file a raw snapshot is copied into. Asked to, and where the file system allows it, its chunks are written
// around the page cache (O_DIRECT): for a copy that nothing reads back soon, caching it only takes memory from the
// app, and new page-cache memory is what a write costs most on a VM that hands freed memory back to its host (the
// host faults it in again, stalling the VM's CPUs: the app's event loop saw 20-35 ms delays during a 1 GB copy).
// Measured there, 1 GB beside a kept 1 GB backup: 0.6 s written directly, 2.0 s through the page cache.
// A write direct I/O cannot take (a file system without it, a piece that is not a multiple of 4 KiB, which every
// disk's block size divides, a buffer off a page boundary) goes through the page cache instead (file-writes.ts).
import { closeSync, constants, openSync, write } from 'node:fs'
import { promisify } from 'node:util'
import { writeAllSync } from './file-writes'

const writeAsync = promisify(write)
const NO_DIRECT_IO = new Set(['EINVAL', 'EOPNOTSUPP', 'ENOTSUP'])
// Positions and lengths of direct writes are multiples of this (disks' logical blocks are 512 or 4096 bytes).
const DIRECT_ALIGNMENT = 4096

export class CopyTarget {
  /** Opened without O_DIRECT: for the writes direct I/O cannot take, and for fdatasync. */
  readonly fd: number
  private direct: number | undefined

  /** Opens an existing file to write; directly when `direct` and the file system allows it. */
  constructor (path: string, { direct }: { direct: boolean }) {
    this.fd = openSync(path, 'r+')
    if (direct && constants.O_DIRECT !== undefined) {
      try {
        this.direct = openSync(path, constants.O_WRONLY | constants.O_DIRECT)
      } catch (err) {
        // How file systems without direct I/O refuse it (EINVAL: Linux's own; the others: some FUSE ones).
        if (!NO_DIRECT_IO.has((err as NodeJS.ErrnoException).code ?? '')) {
          closeSync(this.fd)
          throw err
        }
      }
    }
  }

  /** Whether writes still go around the page cache. */
  get writesDirectly (): boolean {
    return this.direct !== undefined
  }

  /**
   * Writes `length` bytes of `buffer` at `position`; `buffer` must not change until the promise settles. A direct
   * write waits on the disk, not the CPU, so it runs in the thread pool while the caller prepares the next chunk;
   * a write through the page cache is the kernel copying memory, done here, in the caller's (low priority) thread.
   */
  async write (buffer: Buffer, length: number, position: number): Promise<void> {
    let done = 0
    if (this.direct !== undefined && position % DIRECT_ALIGNMENT === 0 && length % DIRECT_ALIGNMENT === 0) {
      try {
        while (done < length) done += (await writeAsync(this.direct, buffer, done, length - done, position + done)).bytesWritten
        return
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
        // Refused (the buffer or the file system): this write and every later one go through the page cache.
        this.closeDirect()
      }
    }
    writeAllSync(this.fd, buffer.subarray(done), length - done, position + done)
  }

  close (): void {
    this.closeDirect()
    closeSync(this.fd)
  }

  private closeDirect (): void {
    if (this.direct !== undefined) closeSync(this.direct)
    this.direct = undefined
  }
}
