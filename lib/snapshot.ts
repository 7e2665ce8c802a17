import { Worker } from 'node:worker_threads'
import { join } from 'node:path'
import { rm } from 'node:fs/promises'
import { once } from 'node:events'
import {
  FST_SQLITE_BACKUP_SNAPSHOT_FAILED,
  FST_SQLITE_BACKUP_CORRUPT_DATABASE,
  FST_SQLITE_BACKUP_TIMEOUT,
  FST_SQLITE_BACKUP_CLOSED
} from './errors'

// 1024 pages (4 MiB at the default page size) per step: a few milliseconds of work between abort checks.
const PAGES_PER_STEP = 1024
const LOCK_RETRY_MS = 50
const SOURCE_CACHE_KIB = 2048
// How long an aborted worker may take to clean up before it is terminated.
const ABORT_GRACE_MS = 2000

export interface SnapshotJob {
  source: string
  tempPath: string
  pagesPerStep: number
  lockRetryMs: number
  cacheKiB: number
}

export interface SnapshotInfo {
  sha256: string
  bytes: number
  pageSize: number
  pageCount: number
  journalMode: string
  sqliteVersion: string
}

export type WorkerReply =
  | { type: 'done', info: SnapshotInfo }
  | { type: 'aborted' }
  | { type: 'error', message: string, code?: string }

export interface SnapshotRequest {
  source: string
  tempPath: string
  timeout: number
  /** Aborts the snapshot when the app closes. */
  signal: AbortSignal
}

/**
 * Copies a consistent snapshot of `source` into the empty file `tempPath` (created 0600 by the caller), checks it
 * with quick_check and flushes it, in a worker thread. On any failure or abort the temp file is gone when the
 * promise settles.
 */
export async function takeSnapshot ({ source, tempPath, timeout, signal }: SnapshotRequest): Promise<SnapshotInfo> {
  if (signal.aborted) {
    await removeTemp(tempPath)
    throw new FST_SQLITE_BACKUP_CLOSED()
  }
  const job: SnapshotJob = { source, tempPath, pagesPerStep: PAGES_PER_STEP, lockRetryMs: LOCK_RETRY_MS, cacheKiB: SOURCE_CACHE_KIB }
  const worker = new Worker(join(__dirname, 'snapshot-worker.js'), { workerData: job })
  const exited = once(worker, 'exit')
  let stopReason: 'timeout' | 'closed' | undefined
  let graceTimer: NodeJS.Timeout | undefined
  const stop = (reason: 'timeout' | 'closed'): void => {
    if (stopReason) return
    stopReason = reason
    worker.postMessage({ type: 'abort' })
    graceTimer = setTimeout(() => worker.terminate(), ABORT_GRACE_MS)
  }
  const onAbort = (): void => stop('closed')
  signal.addEventListener('abort', onAbort, { once: true })
  const timeoutTimer = setTimeout(() => stop('timeout'), timeout)

  try {
    const reply = await new Promise<WorkerReply>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
      worker.once('exit', (code) => reject(new Error(`the snapshot worker stopped unexpectedly (exit code ${code})`)))
    })
    if (reply.type === 'done') return reply.info
    if (reply.type === 'error') {
      if (reply.code === 'SQLITE_CORRUPT' || reply.code === 'SQLITE_NOTADB') throw new FST_SQLITE_BACKUP_CORRUPT_DATABASE(reply.message)
      throw new FST_SQLITE_BACKUP_SNAPSHOT_FAILED(reply.code ? `${reply.message} (${reply.code})` : reply.message)
    }
    throw stopError(stopReason, timeout)
  } catch (err) {
    await removeTemp(tempPath)
    if (stopReason) throw stopError(stopReason, timeout)
    if ((err as { code?: string }).code?.startsWith('FST_')) throw err
    throw new FST_SQLITE_BACKUP_SNAPSHOT_FAILED((err as Error).message, { cause: err })
  } finally {
    clearTimeout(timeoutTimer)
    signal.removeEventListener('abort', onAbort)
    // The worker ends by itself once it has replied; wait for it so that no thread outlives the run.
    await exited
    clearTimeout(graceTimer)
  }
}

function stopError (reason: 'timeout' | 'closed' | undefined, timeout: number): Error {
  return reason === 'timeout' ? new FST_SQLITE_BACKUP_TIMEOUT(timeout) : new FST_SQLITE_BACKUP_CLOSED()
}

export async function removeTemp (tempPath: string): Promise<void> {
  await rm(tempPath, { force: true })
  await rm(`${tempPath}-journal`, { force: true })
}
