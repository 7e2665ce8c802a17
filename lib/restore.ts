import { createReadStream } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { basename, dirname, join } from 'node:path'
import type { Checksum } from './record'
import type { ShouldStop } from './worker/protocol'
import { TaskAborted, TaskFailure } from './worker/protocol'
import { runInWorker, type WorkerTaskOptions } from './worker/run-in-worker'
import { checkDatabaseFile } from './worker/file-checks'
import { createEmptyFile, renameDurably, removeFile } from './durable-fs'
import { isPluginError, FST_SQLITE_BACKUP_RESTORE_REFUSED, FST_SQLITE_BACKUP_RESTORE_FAILED, FST_SQLITE_BACKUP_VERIFY_FAILED } from './errors'

export interface CopyJob {
  from: string
  tempPath: string
  expected: Checksum | null
}

export interface RestoreRequest {
  id: string
  backupPath: string
  expected: Checksum | null
  /** Absolute target path. */
  to: string
  force: boolean
  /** The database being backed up, which is never overwritten. */
  livePath?: string
}

/**
 * Writes a backup to `to` atomically: a verified copy in a temp file beside the target, then one rename. Stale
 * -wal/-shm/-journal files of the target are removed first, so SQLite cannot replay an old log onto restored data.
 */
export async function restoreBackup (request: RestoreRequest, options: WorkerTaskOptions): Promise<Checksum> {
  const { to } = request
  if (request.livePath !== undefined && to === request.livePath) {
    throw new FST_SQLITE_BACKUP_RESTORE_REFUSED(to, 'it is the database being backed up, which is open; stop the app and restore with the command-line tool, or restore to another path')
  }
  const existing = await stat(to).catch(() => undefined)
  if (existing?.isDirectory()) throw new FST_SQLITE_BACKUP_RESTORE_REFUSED(to, 'it is a directory; give the path of a database file')
  if (existing && !request.force) throw new FST_SQLITE_BACKUP_RESTORE_REFUSED(to, 'the file exists; pass force (--force on the command line) to replace it')

  const tempPath = join(dirname(to), `.${basename(to)}.restore-${randomBytes(4).toString('hex')}.tmp`)
  try {
    await createEmptyFile(tempPath)
  } catch (err) {
    throw new FST_SQLITE_BACKUP_RESTORE_FAILED(to, (err as Error).message, { cause: err })
  }
  try {
    const copied = await runInWorker<Checksum>('copy', { from: request.backupPath, tempPath, expected: request.expected }, options)
    for (const suffix of ['-wal', '-shm', '-journal']) await removeFile(`${to}${suffix}`)
    await renameDurably(tempPath, to, dirname(to))
    return copied
  } catch (err) {
    await removeFile(tempPath)
    if (!(err instanceof TaskFailure)) {
      if (isPluginError(err)) throw err
      throw new FST_SQLITE_BACKUP_RESTORE_FAILED(to, (err as Error).message, { cause: err })
    }
    if (err.code === 'VERIFY_FAILED' || err.code === 'SQLITE_CORRUPT' || err.code === 'SQLITE_NOTADB') {
      throw new FST_SQLITE_BACKUP_VERIFY_FAILED(request.id, err.message)
    }
    throw new FST_SQLITE_BACKUP_RESTORE_FAILED(to, err.code ? `${err.message} (${err.code})` : err.message)
  }
}

/** Runs in a worker thread: copies the backup into the temp file, checking its checksum and integrity. */
export async function copyBackup (job: CopyJob, shouldStop: ShouldStop): Promise<Checksum> {
  const hash = createHash('sha256')
  let bytes = 0
  const target = await open(job.tempPath, 'r+')
  try {
    for await (const chunk of createReadStream(job.from, { highWaterMark: 1 << 20 })) {
      if (shouldStop()) throw new TaskAborted()
      hash.update(chunk as Buffer)
      await target.write(chunk as Buffer, 0, (chunk as Buffer).length, bytes)
      bytes += (chunk as Buffer).length
    }
    await target.datasync()
  } finally {
    await target.close()
  }
  const sha256 = hash.digest('hex')
  if (job.expected && (sha256 !== job.expected.sha256 || bytes !== job.expected.bytes)) {
    throw new TaskFailure(`its checksum does not match its record (sha256 ${sha256}, ${bytes} bytes)`, 'VERIFY_FAILED')
  }
  const problems = checkDatabaseFile(job.tempPath, 'integrity_check')
  if (problems.length > 0) throw new TaskFailure(`integrity_check: ${problems.slice(0, 3).join('; ')}`, 'VERIFY_FAILED')
  return { sha256, bytes }
}
