// Which snapshot and which stored changes rebuild the database as of a moment: the same answer for the plugin and
// the command-line tool.
import type { BackupInfo, RestorableWindow } from '../../types/index'
import type { Destination } from '../destinations/destination'
import { FST_SQLITE_BACKUP_NOT_FOUND, FST_SQLITE_BACKUP_CHAIN_BROKEN } from '../errors'
import { chainsOf, type SegmentRef } from './chain'

/** What to replay onto the base: the chain's commits after `from`, read at or before `until`; `to` must be reached. */
export interface ReplayRange {
  chain: string
  from: number
  to: number
  /** ms since the epoch; null: every stored commit. */
  until: number | null
}

export interface RestorePlan {
  base: BackupInfo
  /** In order; empty when the snapshot alone is the answer. */
  segments: SegmentRef[]
  replay: ReplayRange | undefined
}

/**
 * The plan for the database as of `at` (undefined: the newest state stored). The newest good snapshot that can
 * serve: a base of continuous backup pinned by `at`, whose chain's changes are then replayed up to `at`; or a
 * plain snapshot taken by `at`. A hole in the changes to replay is refused, never skipped.
 */
export async function planRestore (destination: Destination, at: Date | undefined): Promise<RestorePlan> {
  const until = at?.getTime() ?? Infinity
  const backups = (await destination.list()).filter((backup) => backup.good)
  const plain = backups.find((backup) => backup.metadata?.continuous === undefined && backup.createdAt.getTime() <= until)
  const base = backups.find((backup) => backup.metadata?.continuous !== undefined && backup.metadata.continuous.pinnedAt <= until)
  if (base === undefined) {
    if (plain === undefined) throw new FST_SQLITE_BACKUP_NOT_FOUND(at === undefined ? 'yet' : `to restore as of ${at.toISOString()}`, destination.name)
    return { base: plain, segments: [], replay: undefined }
  }
  const continuity = base.metadata!.continuous!
  // Segments read before the base's first reading hold only commits it has.
  const chain = chainsOf(await destination.listSegments()).get(continuity.chain) ?? []
  const segments = chain.filter((segment) => segment.lastAt >= continuity.fromAt && segment.firstAt <= until)
  for (let i = 1; i < segments.length; i++) {
    if (segments[i].index !== segments[i - 1].index + 1) {
      throw new FST_SQLITE_BACKUP_CHAIN_BROKEN(destination.name, `segments ${segments[i - 1].index + 1} to ${segments[i].index - 1} of chain ${continuity.chain} are missing, between ${new Date(segments[i - 1].lastAt).toISOString()} and ${new Date(segments[i].firstAt).toISOString()}`)
    }
  }
  // A plain snapshot (taken by a process that was not following the WAL) wins only if it is newer than any change
  // the chain can replay.
  const reach = Math.min(until, Math.max(continuity.pinnedAt, segments.at(-1)?.lastAt ?? 0))
  if (plain !== undefined && plain.createdAt.getTime() > reach) return { base: plain, segments: [], replay: undefined }
  refuseDisprovedChanges(destination, backups, base, reach)
  return { base, segments, replay: { chain: continuity.chain, from: continuity.from, to: continuity.to, until: at === undefined ? null : until } }
}

/**
 * A drill that found the changes between two bases not to rebuild the later one marks them as not to be trusted: a
 * replay through them is refused, never returned.
 */
function refuseDisprovedChanges (destination: Destination, backups: BackupInfo[], base: BackupInfo, reach: number): void {
  const continuity = base.metadata!.continuous!
  for (const later of backups) {
    const checked = later.metadata?.continuous
    if (checked?.chain !== continuity.chain || checked.proof?.ok !== false || checked.pinnedAt <= continuity.pinnedAt) continue
    const start = backups.find((backup) => backup.id === checked.proof!.from)?.metadata?.continuous?.pinnedAt ?? continuity.pinnedAt
    if (reach > start) {
      throw new FST_SQLITE_BACKUP_CHAIN_BROKEN(destination.name, `the drill of backup ${later.id} found that the changes stored after backup ${checked.proof.from} do not rebuild it (${checked.proof.problems.join('; ')})`)
    }
  }
}

/**
 * The moments a restore can return: from the oldest base (when it was pinned) to the last change stored after
 * the newest base. Null when the destination holds no base of continuous backup.
 */
export async function restorableWindow (destination: Destination): Promise<RestorableWindow | null> {
  const bases = (await destination.list()).filter((backup) => backup.good && backup.metadata?.continuous !== undefined)
  if (bases.length === 0) return null
  const newest = bases[0].metadata!.continuous!
  const oldest = bases[bases.length - 1].metadata!.continuous!
  const chain = chainsOf(await destination.listSegments()).get(newest.chain) ?? []
  const last = chain.at(-1)?.lastAt ?? newest.pinnedAt
  return { from: new Date(oldest.pinnedAt), to: new Date(Math.max(last, newest.pinnedAt)) }
}
