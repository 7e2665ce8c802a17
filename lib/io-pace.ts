import { fdatasync, fdatasyncSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { promisify } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { removeFile, CREATE_EXCLUSIVE } from './durable-fs'
import { writeAll } from './file-writes'

// Dirty pages are written back every 8 MiB. Left to pile up, a gigabyte of them is flushed by one fsync, and every
// other fsync on the disk (the app's commits and checkpoints) waits behind it: PostgreSQL's checkpoint_flush_after
// does the same for the same reason. Node has no sync_file_range, so the flush is an fdatasync of the file.
export const FLUSH_EVERY_BYTES = 8 * 1024 * 1024

const fdatasyncAsync = promisify(fdatasync)
const COPY_CHUNK_BYTES = 1024 * 1024

/**
 * The pace of one stream of writes (a snapshot, a copy, a deletion): written back in small steps, and, with
 * `maxRate` (bytes per second), never ahead of that rate. Counts from its creation.
 */
export class IoPace {
  private readonly startedAt = performance.now()
  private bytes = 0
  private unflushed = 0
  /** The flush in progress (async writes only): the next one waits for it, the copy does not. */
  private flushing: Promise<void> | undefined

  constructor (private readonly maxRate: number | undefined) {}

  /** How long to wait, in ms, after `bytes` more so that the stream stays within `maxRate`. */
  delayAfter (bytes: number): number {
    this.bytes += bytes
    if (this.maxRate === undefined) return 0
    const due = this.startedAt + (this.bytes / this.maxRate) * 1000
    return Math.max(0, due - performance.now())
  }

  /** After `bytes` written to `fd`: whether they complete a flush step (the caller then flushes). */
  private flushDue (bytes: number): boolean {
    this.unflushed += bytes
    if (this.unflushed < FLUSH_EVERY_BYTES) return false
    this.unflushed = 0
    return true
  }

  /** Waits for a flush in progress, whatever its outcome: call it before closing the file on a failure. */
  async settle (): Promise<void> {
    await this.flushing?.catch(() => {})
  }

  /** The last step: flushes what is left. */
  async flush (fd: number): Promise<void> {
    this.unflushed = 0
    await this.flushing
    this.flushing = undefined
    await fdatasyncAsync(fd)
  }

  /** In a worker thread, where blocking is free: flushes every few MiB and sleeps as the rate asks. */
  wroteSync (fd: number, bytes: number): void {
    if (this.flushDue(bytes)) fdatasyncSync(fd)
    sleepSync(this.delayAfter(bytes))
  }

  /**
   * The same, without blocking the thread: waits are timers, and each flush runs in the thread pool while the next
   * few MiB are written (the disk and the copy work at once; no more than two steps are ever unflushed).
   */
  async wrote (fd: number, bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.flushDue(bytes)) {
      await this.flushing
      this.flushing = fdatasyncAsync(fd)
      // Awaited by the next step or by flush(); a failure is not lost meanwhile.
      this.flushing.catch(() => {})
    }
    const ms = this.delayAfter(bytes)
    if (ms > 0) await sleep(ms, undefined, { signal })
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4))

/** Blocks this thread for `ms` (worker threads only: the main thread must never block). */
export function sleepSync (ms: number): void {
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms)
}

/** How backups treat a local disk: at most `maxRate` bytes per second, and no waiting once `signal` aborts. */
export interface DiskPace {
  maxRate?: number
  signal?: AbortSignal
}

// A big file is deleted from its end in steps of this size, each made durable before the next: ext4 frees a
// gigabyte of extents in one journal commit otherwise, and every fsync on the disk waits for it (RocksDB's
// DeleteScheduler truncates in steps for the same reason).
const DELETE_STEP_BYTES = FLUSH_EVERY_BYTES

/**
 * Deletes a file (missing is fine) at most `maxRate` bytes per second. Once `signal` aborts (the app closes) the
 * rest goes at once: nothing is left behind. A file still being deleted is no longer a backup: callers rename
 * a backup away from its published name first.
 */
export async function removeGradually (path: string, { maxRate, signal }: DiskPace = {}): Promise<void> {
  let handle
  try {
    handle = await open(path, 'r+')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  try {
    const pace = new IoPace(maxRate)
    let size = (await handle.stat()).size
    while (size > DELETE_STEP_BYTES && signal?.aborted !== true) {
      size -= DELETE_STEP_BYTES
      await handle.truncate(size)
      await handle.datasync()
      const ms = pace.delayAfter(DELETE_STEP_BYTES)
      if (ms > 0) await sleep(ms, undefined, { signal }).catch(() => {})
    }
  } finally {
    await handle.close()
  }
  await removeFile(path)
}

/** Copies `from` to the new file `to` (0600, failing if it exists) at most `maxRate` bytes per second, flushed. */
export async function copyGradually (from: string, to: string, { maxRate, signal }: DiskPace = {}): Promise<void> {
  const source = await open(from, 'r')
  try {
    const target = await open(to, CREATE_EXCLUSIVE, 0o600)
    const pace = new IoPace(maxRate)
    try {
      const buffer = Buffer.allocUnsafe(COPY_CHUNK_BYTES)
      for (let position = 0; ;) {
        const { bytesRead } = await source.read(buffer, 0, buffer.length, position)
        if (bytesRead === 0) break
        await writeAll(target, buffer, bytesRead, position)
        position += bytesRead
        await pace.wrote(target.fd, bytesRead, signal)
      }
      await pace.flush(target.fd)
    } finally {
      await pace.settle()
      await target.close()
    }
  } finally {
    await source.close()
  }
}
