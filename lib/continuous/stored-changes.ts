// The changes as the destinations hold them: where they end (to resume a chain), and which of them no kept base
// snapshot needs any more.
import type { FastifyBaseLogger } from 'fastify'
import type { Destination } from '../destinations/destination'
import { chainsOf, type SegmentRef } from './chain'

/** The last stored segment, downloaded into `path`, for the follower to check the WAL still holds it. */
export interface ResumePoint {
  state: { path: string }
  release: () => Promise<void>
}

/**
 * The chain's last stored segment, when every destination agrees on it (none: a new chain starts), downloaded from
 * the first destination into `path`.
 */
export async function findResumePoint (destinations: Destination[], path: string, signal: AbortSignal): Promise<ResumePoint | undefined> {
  let last: SegmentRef | undefined
  for (const [index, destination] of destinations.entries()) {
    const chains = [...chainsOf(await destination.listSegments()).values()]
    const newest = chains.at(-1)?.at(-1)
    if (index > 0 && newest?.name.replace(/\.seg.*$/, '') !== last?.name.replace(/\.seg.*$/, '')) return undefined
    last = newest
  }
  if (last === undefined) return undefined
  const copy = await destinations[0].segmentCopy(last, path, signal)
  return { state: { path: copy.path }, release: () => copy.release() }
}

/**
 * Deletes the changes no kept base needs: every chain older than the oldest kept base's, and in its chain the
 * segments read before that base. Returns when that oldest base was pinned (null: no base of continuous backup).
 */
export async function pruneChanges (destination: Destination, log: FastifyBaseLogger): Promise<number | null> {
  const bases = (await destination.list()).filter((backup) => backup.metadata?.continuous !== undefined)
  const oldest = bases.at(-1)?.metadata?.continuous
  if (oldest === undefined) return null
  const doomed: SegmentRef[] = []
  for (const [chain, segments] of chainsOf(await destination.listSegments())) {
    if (chain < oldest.chain) doomed.push(...segments)
    else if (chain === oldest.chain) doomed.push(...segments.filter((segment) => segment.lastAt < oldest.fromAt))
  }
  for (const segment of doomed) await destination.removeSegment(segment)
  if (doomed.length > 0) log.debug({ destination: destination.name, segments: doomed.length }, 'sqlite backup: deleted the changes no kept snapshot needs')
  return oldest.pinnedAt
}
