import { open } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import type { Checksum } from './record'
import { TaskAborted, TaskFailure, type ShouldStop } from './worker/protocol'
import { runInWorker, type WorkerTaskOptions } from './worker/run-in-worker'
import { flushFile, removeFile } from './durable-fs'
import { FST_SQLITE_BACKUP_SNAPSHOT_FAILED, FST_SQLITE_BACKUP_CORRUPT_DATABASE } from './errors'

// 1024 pages (4 MiB at the default page size) per step: a few milliseconds of work between stop checks.
const PAGES_PER_STEP = 1024
// Short native waits for a lock keep the worker responsive to a stop; the run's timeout bounds the retries.
const LOCK_RETRY_MS = 50
const SOURCE_CACHE_KIB = 2048

export interface SnapshotJob {
  source: string
  tempPath: string
}

/** What the copy itself tells, read inside the snapshot. */
export interface CopyInfo {
  pageSize: number
  pageCount: number
  journalMode: string
  sqliteVersion: string
}

export interface SnapshotInfo extends CopyInfo, Checksum {}

/** Makes the copy somewhere else than in a worker of its own (continuous backup makes it in its follower thread). */
export type SnapshotCopier<C extends CopyInfo> = (job: SnapshotJob, options: WorkerTaskOptions) => Promise<C>

/**
 * Copies a consistent snapshot of `source` into the empty file `tempPath` (created 0600 by the caller), checks it
 * with quick_check, hashes it and flushes it, in worker threads. The check and the hash read the copy at the same
 * time, each in its own thread. On any failure or stop the temp file is gone when the promise settles.
 */
export async function takeSnapshot<C extends CopyInfo> (job: SnapshotJob, options: WorkerTaskOptions, copy?: SnapshotCopier<C>): Promise<SnapshotInfo & C> {
  const shared = { ...options, deadline: Date.now() + options.timeout }
  try {
    const copied = copy ? await copy(job, shared) : await runInWorker<C>('snapshot', job, shared)
    const [checked, hashed] = await Promise.allSettled([
      runInWorker<string[]>('quick-check', { path: job.tempPath }, shared),
      runInWorker<Checksum>('hash', { path: job.tempPath }, shared)
    ])
    if (checked.status === 'rejected') throw checked.reason
    if (hashed.status === 'rejected') throw hashed.reason
    if (checked.value.length > 0) throw new TaskFailure(`quick_check: ${checked.value.slice(0, 3).join('; ')}`, 'SQLITE_CORRUPT')
    await flushFile(job.tempPath)
    return { ...copied, ...hashed.value }
  } catch (err) {
    await removeTemp(job.tempPath)
    if (!(err instanceof TaskFailure)) throw err
    if (err.code === 'SQLITE_CORRUPT' || err.code === 'SQLITE_NOTADB') throw new FST_SQLITE_BACKUP_CORRUPT_DATABASE(err.message)
    throw new FST_SQLITE_BACKUP_SNAPSHOT_FAILED(err.code ? `${err.message} (${err.code})` : err.message)
  }
}

export async function removeTemp (tempPath: string): Promise<void> {
  await removeFile(tempPath)
  await removeFile(`${tempPath}-journal`)
}

/** The copy itself; runs in a worker thread, where blocking is free. */
export async function snapshotDatabase (job: SnapshotJob, shouldStop: ShouldStop, onPinned?: () => void): Promise<CopyInfo> {
  // Read-write although it never writes: like any connection, it must be able to roll back the hot journal of a
  // writer that crashed mid-transaction, or the database could not be backed up until the app opens it again.
  const source = new Database(job.source, { fileMustExist: true })
  try {
    source.pragma(`busy_timeout = ${LOCK_RETRY_MS}`)
    await beginReadTransaction(source, shouldStop)
    // The snapshot is fixed from here on: continuous backup notes where its WAL reading stands now.
    onPinned?.()
    // The copy streams through the page cache; a small cache keeps the worker's memory flat at any size.
    // (Set inside the transaction: the pragma reads the schema, which needs the lock.)
    source.pragma(`cache_size = -${SOURCE_CACHE_KIB}`)
    // Read inside the snapshot, so that these figures describe exactly the copied pages.
    const journalMode = source.pragma('journal_mode', { simple: true }) as string
    const pageSize = source.pragma('page_size', { simple: true }) as number
    const pageCount = source.pragma('page_count', { simple: true }) as number
    const sqliteVersion = (source.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v

    // The backup API normally restarts whenever another connection commits. Holding our own read transaction
    // pins one snapshot (WAL) or one shared lock (rollback journal) for every step, so it never restarts and
    // can still be stepped in small pieces and stopped between them.
    await source.backup(job.tempPath, {
      progress: () => {
        if (shouldStop()) throw new TaskAborted()
        return PAGES_PER_STEP
      }
    })
    source.exec('COMMIT')
    await markRollbackJournal(job.tempPath)
    return { pageSize, pageCount, journalMode, sqliteVersion }
  } finally {
    source.close()
  }
}

async function beginReadTransaction (db: Database.Database, shouldStop: ShouldStop): Promise<void> {
  for (;;) {
    if (shouldStop()) throw new TaskAborted()
    try {
      db.exec('BEGIN')
      // A deferred transaction takes its read snapshot at the first read.
      db.prepare('SELECT count(*) FROM sqlite_schema').get()
      return
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK')
      if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err
      await sleep(LOCK_RETRY_MS)
    }
  }
}

/**
 * A page copy of a WAL database says "WAL" in its header (bytes 18-19 = 2). Backups are single files, so they are
 * marked as rollback-journal databases (1): they open read-only anywhere without -wal/-shm files.
 */
async function markRollbackJournal (path: string): Promise<void> {
  const file = await open(path, 'r+')
  try {
    const header = Buffer.alloc(20)
    await file.read(header, 0, 20, 0)
    if (header[18] === 2 || header[19] === 2) {
      await file.write(Buffer.from([1, 1]), 0, 2, 18)
    }
  } finally {
    await file.close()
  }
}
