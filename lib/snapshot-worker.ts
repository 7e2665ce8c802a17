// Runs in a worker thread: copies one consistent snapshot of the database into a temp file, checks and flushes it.
// Everything here may block this thread freely; the app's event loop is elsewhere.
import { parentPort, workerData } from 'node:worker_threads'
import { createReadStream } from 'node:fs'
import { open, rm } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import type { SnapshotJob, SnapshotInfo, WorkerReply } from './snapshot'

const job = workerData as SnapshotJob
let aborted = false

class Aborted extends Error {}

parentPort!.on('message', (message: { type: string }) => {
  if (message.type === 'abort') aborted = true
})
// The port alone must not keep this thread alive: it ends as soon as the run has replied.
parentPort!.unref()

async function run (): Promise<SnapshotInfo> {
  const source = new Database(job.source, { readonly: true, fileMustExist: true })
  try {
    // Short native waits keep this thread responsive to an abort; the run's timeout bounds the retries.
    source.pragma(`busy_timeout = ${job.lockRetryMs}`)
    await beginReadTransaction(source)
    // The copy streams through the page cache; a small cache keeps the worker's memory flat at any size.
    // (Set inside the transaction: the pragma reads the schema, which needs the lock.)
    source.pragma(`cache_size = -${job.cacheKiB}`)
    // Read inside the snapshot, so that these figures describe exactly the copied pages.
    const journalMode = source.pragma('journal_mode', { simple: true }) as string
    const pageSize = source.pragma('page_size', { simple: true }) as number
    const pageCount = source.pragma('page_count', { simple: true }) as number
    const sqliteVersion = (source.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v

    // The backup API normally restarts whenever another connection commits. Holding our own read transaction
    // pins one snapshot (WAL) or one shared lock (rollback journal) for every step, so it never restarts and
    // can still be stepped in small pieces and aborted between them.
    await source.backup(job.tempPath, {
      progress: () => {
        if (aborted) throw new Aborted()
        return job.pagesPerStep
      }
    })
    source.exec('COMMIT')
    await markRollbackJournal(job.tempPath)
    checkCopy(job.tempPath)
    const { sha256, bytes } = await hashAndFlush(job.tempPath)
    return { sha256, bytes, pageSize, pageCount, journalMode, sqliteVersion }
  } finally {
    source.close()
  }
}

async function beginReadTransaction (db: Database.Database): Promise<void> {
  for (;;) {
    if (aborted) throw new Aborted()
    try {
      db.exec('BEGIN')
      // A deferred transaction takes its read snapshot at the first read.
      db.prepare('SELECT count(*) FROM sqlite_schema').get()
      return
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK')
      if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err
      await sleep(job.lockRetryMs)
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

function checkCopy (path: string): void {
  const copy = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const rows = copy.pragma('quick_check') as Array<{ quick_check: string }>
    const problems = rows.map((row) => row.quick_check).filter((line) => line !== 'ok')
    if (problems.length > 0) {
      const error = new Error(`quick_check: ${problems.slice(0, 3).join('; ')}`) as Error & { code: string }
      error.code = 'SQLITE_CORRUPT'
      throw error
    }
  } finally {
    copy.close()
  }
}

async function hashAndFlush (path: string): Promise<{ sha256: string, bytes: number }> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    if (aborted) throw new Aborted()
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  const file = await open(path, 'r+')
  try {
    await file.datasync()
  } finally {
    await file.close()
  }
  return { sha256: hash.digest('hex'), bytes }
}

run().then(
  (info) => reply({ type: 'done', info }),
  async (err: Error & { code?: string }) => {
    // Leave nothing half-written: the main thread removes these too, in case this thread is terminated first.
    await rm(job.tempPath, { force: true })
    await rm(`${job.tempPath}-journal`, { force: true })
    reply(err instanceof Aborted
      ? { type: 'aborted' }
      : { type: 'error', message: err.message, code: err.code })
  }
)

function reply (message: WorkerReply): void {
  parentPort!.postMessage(message)
}
