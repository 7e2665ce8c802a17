import { open, truncate } from 'node:fs/promises'
import { openSync, closeSync } from 'node:fs'
import Database from 'better-sqlite3'
import type { Checksum } from './record'
import { TaskAborted, TaskFailure, type ShouldStop } from './worker/protocol'
import { runInWorker, type TaskThread, type WorkerTaskOptions } from './worker/task-thread'
import { hashFile, checkDatabaseFile } from './worker/file-checks'
import { copyAndCheck, CHECK_BESIDE_COPY_MIN_BYTES, type CheckedRawCopy } from './check-beside-copy'
import { flushFile, removeFile } from './durable-fs'
import { IoPace, removeGradually, type DiskPace } from './io-pace'
import { pinWithWal, closeWal, copyWalSnapshot, endPin, RawCopyUnproven, type PinnedSnapshot } from './wal-snapshot'
import { beginReadTransaction, retryWhileBusy, LOCK_RETRY_MS } from './read-transaction'
import { FST_SQLITE_BACKUP_SNAPSHOT_FAILED, FST_SQLITE_BACKUP_CORRUPT_DATABASE } from './errors'

// 1024 pages (4 MiB at the default page size) per step: a few milliseconds of work between stop checks.
const PAGES_PER_STEP = 1024
const SOURCE_CACHE_KIB = 2048

export interface SnapshotJob {
  source: string
  tempPath: string
  /** Bytes per second the copy may write; undefined: no limit (it is still flushed in small steps). */
  maxRate?: number
  /** The CPUs this process may use, which decide where a large copy's check runs (check-beside-copy.ts). */
  cpus?: number
}

/** What the copy itself tells, read inside the snapshot, and the checksum of what it wrote. */
export interface CopyInfo extends Checksum {
  /** How the pages were copied: as file bytes with the WAL laid over, or through SQLite's backup API. */
  method: 'raw' | 'backup-api'
  pageSize: number
  pageCount: number
  journalMode: string
  sqliteVersion: string
}

/** The copy and its check, by the snapshot thread (with its helper for a large WAL snapshot, CPUs allowing). */
interface CheckedCopy extends CopyInfo {
  problems: string[]
  /** What quick_check read, and when: the pinned snapshot (beside its raw copy or after it), or the copy once written. */
  checked: CheckedRawCopy['checked'] | 'copy'
}

/** Makes the copy somewhere else than in a worker of its own (continuous backup makes it in its follower thread). */
export type SnapshotCopier<C extends CopyInfo> = (job: SnapshotJob, options: WorkerTaskOptions) => Promise<C>

/** Where the snapshot is taken: a copier's thread, or else `thread` (a thread of its own when not given). */
export interface SnapshotRunners<C extends CopyInfo> {
  copier?: SnapshotCopier<C>
  thread?: TaskThread
}

/**
 * Copies a consistent snapshot of `source` into the empty file `tempPath` (created 0600 by the caller), hashed as
 * it is written, flushed, then checked with quick_check, all in one worker thread (or the copy in the copier's
 * thread and the check in a worker). On any failure or stop the temp file is gone when the promise settles.
 */
export async function takeSnapshot<C extends CopyInfo> (job: SnapshotJob, options: WorkerTaskOptions, { copier, thread }: SnapshotRunners<C> = {}): Promise<C> {
  const shared = { ...options, deadline: Date.now() + options.timeout }
  const inThread = <T>(task: 'snapshot' | 'quick-check', taskJob: unknown): Promise<T> => thread ? thread.run<T>(task, taskJob, shared) : runInWorker<T>(task, taskJob, shared)
  try {
    let copied: C
    let problems: string[]
    if (copier) {
      copied = await copier(job, shared)
      problems = await inThread<string[]>('quick-check', { path: job.tempPath })
    } else {
      // Which of the two the check read is for the tests of snapshotTask; the caller needs the copy's facts only.
      const { problems: found, checked: _checked, ...info } = await inThread<CheckedCopy>('snapshot', job)
      // Without a copier, C is CopyInfo itself.
      copied = info as C
      problems = found
    }
    if (problems.length > 0) throw new TaskFailure(`quick_check: ${problems.slice(0, 3).join('; ')}`, 'SQLITE_CORRUPT')
    return copied
  } catch (err) {
    await removeTemp(job.tempPath)
    if (!(err instanceof TaskFailure)) throw err
    if (err.code === 'SQLITE_CORRUPT' || err.code === 'SQLITE_NOTADB') throw new FST_SQLITE_BACKUP_CORRUPT_DATABASE(err.message)
    throw new FST_SQLITE_BACKUP_SNAPSHOT_FAILED(err.code ? `${err.message} (${err.code})` : err.message)
  }
}

/** Removes a snapshot's temp file (gradually with `disk`, see io-pace.ts) and a journal SQLite may have left. */
export async function removeTemp (tempPath: string, disk?: DiskPace): Promise<void> {
  await (disk ? removeGradually(tempPath, disk) : removeFile(tempPath))
  await removeFile(`${tempPath}-journal`)
}

/** Worker task: the snapshot and its quick_check (of the pinned snapshot when large and WAL, else of the copy). */
export async function snapshotTask (job: SnapshotJob, shouldStop: ShouldStop): Promise<CheckedCopy> {
  const copied = await snapshotDatabase(job, shouldStop, { checkPinnedSnapshot: true, checkpointAfter: true })
  const { problems, checked, ...copy } = copied
  if (problems !== undefined && checked !== undefined) return { ...copy, problems, checked }
  if (shouldStop()) throw new TaskAborted()
  return { ...copy, problems: checkDatabaseFile(job.tempPath, 'quick_check'), checked: 'copy' }
}

export interface SnapshotSteps {
  /** Called once the snapshot is pinned: continuous backup notes where its WAL reading stands then. */
  onPinned?: () => void
  /**
   * A large raw copy is checked through the pinned connection, beside the copy or after it (check-beside-copy.ts),
   * and the result carries `problems`.
   */
  checkPinnedSnapshot?: boolean
  /** The commits the pin held in the WAL are checkpointed as it ends (endPin), not by the app's next commit. */
  checkpointAfter?: boolean
}

/**
 * The copy itself, hashed and flushed; runs in a worker thread, where blocking is free. A WAL database is copied
 * as file bytes with its WAL laid over (wal-snapshot.ts); a rollback-journal database, or a WAL snapshot the raw
 * copy cannot prove, through SQLite's backup API, under the same read transaction.
 */
export async function snapshotDatabase (job: SnapshotJob, shouldStop: ShouldStop, { onPinned, checkPinnedSnapshot = false, checkpointAfter = false }: SnapshotSteps = {}): Promise<CopyInfo & Partial<Pick<CheckedRawCopy, 'problems' | 'checked'>>> {
  // Read-write although it never writes: like any connection, it must be able to roll back the hot journal of a
  // writer that crashed mid-transaction, or the database could not be backed up until the app opens it again.
  const source = new Database(job.source, { fileMustExist: true })
  let pinned: PinnedSnapshot | undefined
  try {
    source.pragma(`busy_timeout = ${LOCK_RETRY_MS}`)
    // A writer of a rollback-journal database may hold the file for a moment even for this: retried like a read.
    const walMode = await retryWhileBusy(() => source.pragma('journal_mode', { simple: true }) === 'wal', source, shouldStop)
    if (walMode) pinned = await pinWithWal(job.source, source, shouldStop)
    else await beginReadTransaction(source, shouldStop)
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
    const info = { pageSize, pageCount, journalMode, sqliteVersion }

    if (pinned !== undefined) {
      try {
        const rawJob = { tempPath: job.tempPath, pageSize, pageCount, snapshot: pinned, maxRate: job.maxRate }
        const { shm } = pinned
        const finishPin = (): void => { if (checkpointAfter) endPin(source, job.source, shm); else source.exec('COMMIT') }
        if (checkPinnedSnapshot && pageCount * pageSize >= CHECK_BESIDE_COPY_MIN_BYTES) {
          // Checked through the pinned connection, the copy is read back by nothing soon: it is written around the
          // page cache.
          const { checksum, problems, checked } = await copyAndCheck(source, { ...rawJob, direct: true }, shouldStop, job.cpus).catch(diskFull)
          finishPin()
          return { ...info, ...checksum, method: 'raw', problems, checked }
        }
        const checksum = await copyWalSnapshot(rawJob, shouldStop).catch(diskFull)
        finishPin()
        return { ...info, ...checksum, method: 'raw' }
      } catch (err) {
        if (!(err instanceof RawCopyUnproven)) throw err
        // Not expected (SQLite keeps every frame a reader needs), but the same pinned snapshot, page by page, is sure.
        await truncate(job.tempPath, 0)
      }
    }
    await copyWithBackupApi(source, job, pageSize, shouldStop)
    source.exec('COMMIT')
    await markRollbackJournal(job.tempPath)
    const checksum = await hashFile(job.tempPath, shouldStop)
    await flushFile(job.tempPath)
    return { ...info, ...checksum, method: 'backup-api' }
  } finally {
    closeWal(pinned)
    source.close()
  }
}

/** A full disk says so the way SQLite's own copy does (SQLITE_FULL), whichever way the copy was made. */
function diskFull (err: NodeJS.ErrnoException): never {
  if (err.code === 'ENOSPC' || err.code === 'EDQUOT') throw new TaskFailure(`the disk is full: ${err.message}`, 'SQLITE_FULL')
  throw err
}

/**
 * SQLite's backup API copies the pinned snapshot page by page. It normally restarts whenever another connection
 * commits; holding our own read transaction pins one snapshot (WAL) or one shared lock (rollback journal) for every
 * step, so it never restarts and can still be stepped in small pieces and stopped between them.
 */
async function copyWithBackupApi (source: Database.Database, job: SnapshotJob, pageSize: number, shouldStop: ShouldStop): Promise<void> {
  const pace = new IoPace(job.maxRate)
  const target = openSync(job.tempPath, 'r')
  try {
    await source.backup(job.tempPath, {
      progress: () => {
        if (shouldStop()) throw new TaskAborted()
        pace.wroteSync(target, PAGES_PER_STEP * pageSize)
        return PAGES_PER_STEP
      }
    })
  } finally {
    closeSync(target)
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
