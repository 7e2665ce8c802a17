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

export function isPointInTime (target: unknown): target is { at: Date | string } {
  return typeof target === 'object' && target !== null && 'at' in target
}

/** The time of `{ at }`, validated. */
export function pointInTime (target: { at: Date | string }): Date {
  const at = new Date(target.at)
  if (Number.isNaN(at.getTime())) throw new FST_SQLITE_BACKUP_INVALID_OPTION('at', 'a Date or an ISO 8601 time')
  return at
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
