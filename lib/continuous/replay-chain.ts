// Runs in a worker thread, on a restore's temp file: replays a chain's stored commits onto its base snapshot.
import type { ShouldStop } from '../worker/protocol'
import { TaskAborted, TaskFailure } from '../worker/protocol'
import { SegmentCorrupt } from './segment'
import { readSegmentHeader, forEachCommit } from './segment-reader'
import { Replay } from './replay'
import type { ReplayRange } from './restore-plan'

export interface ReplayJob {
  /** Local copies of the segments, in chain order. */
  segments: string[]
  range: ReplayRange
}

/** Called once the file is consistent again after commit `commit` (from `range.to` on): 'stop' ends the replay. */
export type AfterCommit = (commit: number) => 'stop' | undefined

export interface ReplayOutcome {
  chain: string
  /** Number of the last commit the file now holds. */
  commit: number
  /** When that commit was read from the WAL; null when none was replayed. */
  at: number | null
  commits: number
}

/**
 * Applies the commits after `range.from`, in order, up to the last one read at or before `range.until`. Every
 * commit up to `range.to` must be there: the base may hold any of them, and only replaying them all makes the file
 * consistent again. A segment that does not follow its predecessor commit for commit is a hole: refused
 * (code CHAIN_BROKEN), never skipped.
 */
export function replayChain (path: string, job: ReplayJob, shouldStop: ShouldStop, afterCommit?: AfterCommit): ReplayOutcome {
  const { range } = job
  const replay = Replay.open(path)
  let last: number | undefined
  let applied = range.from
  let done = false
  try {
    for (const segmentPath of job.segments) {
      if (done) break
      if (shouldStop()) throw new TaskAborted()
      const header = readSegmentHeader(segmentPath)
      if (header.chain !== range.chain) throw new TaskFailure(`segment ${header.index} belongs to chain ${header.chain}, not ${range.chain}`, 'CHAIN_BROKEN')
      const expected = last === undefined ? range.from + 1 : last + 1
      if (last === undefined ? header.firstCommit > expected : header.firstCommit !== expected) {
        throw new TaskFailure(`commits ${expected} to ${header.firstCommit - 1} of chain ${range.chain} are missing before segment ${header.index}`, 'CHAIN_BROKEN')
      }
      let number = header.firstCommit - 1
      forEachCommit(segmentPath, (commit) => {
        number++
        if (number <= range.from) return
        if (number > range.to && range.until !== null && commit.at > range.until) {
          done = true
          return 'stop'
        }
        replay.apply(commit)
        applied = number
        if (number >= range.to && afterCommit?.(number) === 'stop') {
          done = true
          return 'stop'
        }
      })
      last = number
    }
    if (applied < range.to) {
      throw new TaskFailure(`the changes stored end at commit ${applied} of chain ${range.chain}, before commit ${range.to}, which the snapshot may hold`, 'CHAIN_BROKEN')
    }
    replay.finish()
  } catch (err) {
    // A damaged segment is a hole in the chain like a missing one: refused, never applied in part.
    if (err instanceof SegmentCorrupt) throw new TaskFailure(err.message, 'CHAIN_BROKEN')
    throw err
  } finally {
    replay.close()
  }
  return { chain: range.chain, commit: applied, at: replay.lastAt ?? null, commits: replay.commits }
}
