// Reading a destination, the same way for the plugin and the command-line tool: which backup to take, and a
// local copy of it to check or restore.
import type { BackupInfo } from '../../types/index'
import { FST_SQLITE_BACKUP_NOT_FOUND, FST_SQLITE_BACKUP_INVALID_OPTION } from '../errors'
import type { Destination } from './destination'

/** The newest backup, whatever its drill said (verify looks at it as it is). */
export async function newestBackup (destination: Destination): Promise<BackupInfo> {
  const [newest] = await destination.list()
  if (!newest) throw new FST_SQLITE_BACKUP_NOT_FOUND('yet', destination.name)
  return newest
}

/** The newest backup whose restore drill did not fail: what a restore takes by default. */
export async function newestGoodBackup (destination: Destination): Promise<BackupInfo> {
  const backups = await destination.list()
  const good = backups.find((backup) => backup.good)
  if (!good) throw new FST_SQLITE_BACKUP_NOT_FOUND(backups.length === 0 ? 'yet' : 'whose restore drill passed', destination.name)
  return good
}

/** The newest backup taken at or before `at`. */
export async function backupAt (destination: Destination, at: Date): Promise<BackupInfo> {
  const match = (await destination.list()).find((backup) => backup.createdAt.getTime() <= at.getTime())
  if (!match) throw new FST_SQLITE_BACKUP_NOT_FOUND(`taken at or before ${at.toISOString()}`, destination.name)
  return match
}

/** A backup named by its id (validated), or the newest taken at or before `{ at }`. */
export async function findBackup (destination: Destination, target: string | { at: Date | string }): Promise<BackupInfo> {
  if (typeof target === 'object' && target !== null && 'at' in target) {
    const at = new Date(target.at)
    if (Number.isNaN(at.getTime())) throw new FST_SQLITE_BACKUP_INVALID_OPTION('at', 'a Date or an ISO 8601 time')
    return await backupAt(destination, at)
  }
  return await destination.find(target)
}

/** Runs `work` on a local copy of a backup (the file itself, or a download at `tempPath`), removed afterwards. */
export async function withLocalCopy<T> (
  destination: Destination,
  backup: BackupInfo,
  { tempPath, signal }: { tempPath: string, signal: AbortSignal },
  work: (path: string) => Promise<T>
): Promise<T> {
  const copy = await destination.localCopy(backup, tempPath, signal)
  try {
    return await work(copy.path)
  } finally {
    await copy.release()
  }
}
