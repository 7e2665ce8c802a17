import { createReadStream } from 'node:fs'
import { open, stat, realpath } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { basename, dirname, join } from 'node:path'
import type { Checksum } from './record'
import type { ShouldStop } from './worker/protocol'
import { TaskAborted, TaskFailure } from './worker/protocol'
import { runInWorker, type WorkerTaskOptions } from './worker/task-thread'
import { checkDatabaseFile } from './worker/file-checks'
import { createEmptyFile, renameDurably, removeFile } from './durable-fs'
import { writeAll } from './file-writes'
import { replayChain, type ReplayJob, type ReplayOutcome } from './continuous/replay-chain'
import { hashFile } from './worker/file-checks'
import { isPluginError, FST_SQLITE_BACKUP_CHAIN_BROKEN, FST_SQLITE_BACKUP_RESTORE_REFUSED, FST_SQLITE_BACKUP_RESTORE_FAILED, FST_SQLITE_BACKUP_VERIFY_FAILED } from './errors'

export interface CopyJob {
  from: string
  tempPath: string
  expected: Checksum | null
  /** Changes to replay onto the copy before it is checked. */
  replay?: ReplayJob
}

export interface Restored extends Checksum {
  replayed?: ReplayOutcome
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
  replay?: ReplayJob
  /** Named in errors about the changes replayed. */
  destination?: string
}

// A database's files: the ones a restore replaces (the first) or removes (the others), and the ones SQLite uses.
const DATABASE_FILES = ['', '-wal', '-shm', '-journal'] as const

/**
 * Writes a backup to `to` atomically: a verified copy in a temp file beside the target, then one rename. Stale
 * -wal/-shm/-journal files of the target are removed first, so SQLite cannot replay an old log onto restored data.
 */
export async function restoreBackup (request: RestoreRequest, options: WorkerTaskOptions): Promise<Restored> {
  const { to } = request
  // Decided before anything is created or removed.
  await refuseLiveTarget(to, request.livePath)
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
    const copied = await runInWorker<Restored>('copy', { from: request.backupPath, tempPath, expected: request.expected, replay: request.replay }, options)
    // Again: the copy may have taken minutes, time enough for a deploy to switch a symlink on the target's path.
    await refuseLiveTarget(to, request.livePath)
    for (const suffix of ['-wal', '-shm', '-journal']) await removeFile(`${to}${suffix}`)
    await renameDurably(tempPath, to, dirname(to))
    return copied
  } catch (err) {
    await removeFile(tempPath)
    if (!(err instanceof TaskFailure)) {
      if (isPluginError(err)) throw err
      throw new FST_SQLITE_BACKUP_RESTORE_FAILED(to, (err as Error).message, { cause: err })
    }
    if (err.code === 'CHAIN_BROKEN') throw new FST_SQLITE_BACKUP_CHAIN_BROKEN(request.destination ?? 'the destination', err.message)
    if (err.code === 'VERIFY_FAILED' || err.code === 'SQLITE_CORRUPT' || err.code === 'SQLITE_NOTADB') {
      throw new FST_SQLITE_BACKUP_VERIFY_FAILED(request.id, err.message)
    }
    throw new FST_SQLITE_BACKUP_RESTORE_FAILED(to, err.code ? `${err.message} (${err.code})` : err.message)
  }
}

/**
 * Refuses a target that is the live database, or whose files the restore would replace or remove include one of the
 * live database's (its -wal above all, which holds commits not yet in the database file). Compared by what the paths
 * are, not how they are spelled: a symlink to the file, a hard link, a symlinked directory on the way (a deploy's
 * `current/`) all name the live files under another string.
 */
async function refuseLiveTarget (to: string, livePath: string | undefined): Promise<void> {
  if (livePath === undefined) return
  const live = await Promise.all(DATABASE_FILES.map((suffix) => identify(`${livePath}${suffix}`)))
  for (const suffix of DATABASE_FILES) {
    const target = await identify(`${to}${suffix}`)
    const match = live.findIndex((file) => sameFile(target, file))
    if (match === -1) continue
    const subject = suffix === '' ? 'it is' : `its ${suffix} file would be`
    const which = match === 0 ? '' : `the ${DATABASE_FILES[match]} file of `
    const how = `${to}${suffix}` === `${livePath}${DATABASE_FILES[match]}` ? '' : ` "${livePath}", reached by another path (a symlink, a hard link or a symlinked directory),`
    throw new FST_SQLITE_BACKUP_RESTORE_REFUSED(to, `${subject} ${which}the database being backed up${how} which is open; stop the app and restore with the command-line tool, or restore to another path`)
  }
}

interface FileIdentity {
  /** Device and inode, when the file exists (through symlinks, as open() would reach it). */
  inode?: string
  /** The real path: of the file, or of its directory plus its name when it does not exist (yet). */
  path: string
}

async function identify (path: string): Promise<FileIdentity> {
  const stats = await stat(path, { bigint: true }).catch(() => undefined)
  const real = await realpath(path).catch(async () => join(await realpath(dirname(path)).catch(() => dirname(path)), basename(path)))
  return { inode: stats === undefined ? undefined : `${stats.dev}:${stats.ino}`, path: real }
}

function sameFile (a: FileIdentity, b: FileIdentity): boolean {
  return (a.inode !== undefined && a.inode === b.inode) || a.path === b.path
}

/**
 * Runs in a worker thread: copies the backup into the temp file, checking its checksum, replays the changes asked
 * for, and checks the result's integrity.
 */
export async function copyBackup (job: CopyJob, shouldStop: ShouldStop): Promise<Restored> {
  const hash = createHash('sha256')
  let bytes = 0
  const target = await open(job.tempPath, 'r+')
  try {
    for await (const chunk of createReadStream(job.from, { highWaterMark: 1 << 20 })) {
      if (shouldStop()) throw new TaskAborted()
      hash.update(chunk as Buffer)
      await writeAll(target, chunk as Buffer, (chunk as Buffer).length, bytes)
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
  let restored: Restored = { sha256, bytes }
  if (job.replay !== undefined) {
    const replayed = replayChain(job.tempPath, job.replay, shouldStop)
    restored = { ...await hashFile(job.tempPath, shouldStop), replayed }
  }
  const problems = checkDatabaseFile(job.tempPath, 'integrity_check')
  if (problems.length > 0) throw new TaskFailure(`integrity_check: ${problems.slice(0, 3).join('; ')}`, job.replay ? 'REPLAY_FAILED' : 'VERIFY_FAILED')
  return restored
}
