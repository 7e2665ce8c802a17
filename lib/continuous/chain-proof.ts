// The drill of continuous backup: does the chain rebuild what a later snapshot holds? The previous base of the chain,
// with the stored changes replayed onto it, must match the new base page for page.
import { openSync, readSync, closeSync, fstatSync } from 'node:fs'
import type { BackupMetadata } from '../../types/index'
import type { Destination, LocalCopy } from '../destinations/destination'
import type { Checksum } from '../record'
import { checksumOf } from '../record'
import { createEmptyFile, removeFile } from '../durable-fs'
import type { ShouldStop } from '../worker/protocol'
import { TaskAborted, TaskFailure } from '../worker/protocol'
import { runInWorker, type WorkerTaskOptions } from '../worker/task-thread'
import { copyBackup } from '../restore'
import { chainsOf } from './chain'
import { replayChain } from './replay-chain'
import type { ReplayRange } from './restore-plan'

// The database header (page 1's first 100 bytes) holds counters that a page copy and a replay set differently.
const HEADER_BYTES = 100
const CHUNK_BYTES = 1 << 20

export interface ChainProof {
  ok: boolean
  /** ISO 8601 */
  at: string
  /** The earlier base the changes were replayed onto. */
  from: string
  /** The commit after which the replay matched the new base. */
  commit?: number
  problems: string[]
}

export interface ProofJob {
  base: string
  expected: Checksum | null
  segments: string[]
  range: ReplayRange
  /** The new base, and the commits it may hold: all up to `from`, none after `to`. */
  target: string
  targetFrom: number
  targetTo: number
  tempPath: string
}

/**
 * Proves the chain between the newest earlier base of `metadata`'s chain and `metadata` (the base just published,
 * a plain file at `path`). Undefined when the chain has no earlier base there. Downloads and the temp copy are
 * removed whatever happens.
 */
export async function proveChain (
  destination: Destination,
  metadata: BackupMetadata,
  path: string,
  { downloadPath, ...options }: WorkerTaskOptions & { downloadPath: (name: string) => string }
): Promise<ChainProof | undefined> {
  const target = metadata.continuous
  if (target === undefined) return undefined
  const previous = (await destination.list()).find((backup) => backup.id < metadata.id && backup.good && backup.metadata?.continuous?.chain === target.chain)
  const base = previous?.metadata?.continuous
  if (previous === undefined || base === undefined) return undefined
  const segments = (chainsOf(await destination.listSegments()).get(target.chain) ?? [])
    .filter((segment) => segment.lastAt >= base.fromAt && segment.firstAt <= target.pinnedAt)
  const copies: LocalCopy[] = []
  const tempPath = downloadPath(`${metadata.id}-proof`)
  const at = new Date().toISOString()
  try {
    const baseCopy = await destination.localCopy(previous, downloadPath(previous.id), options.signal)
    copies.push(baseCopy)
    for (const segment of segments) copies.push(await destination.segmentCopy(segment, downloadPath(`${segment.chain}-${segment.index}`), options.signal))
    await createEmptyFile(tempPath)
    const job: ProofJob = {
      base: baseCopy.path,
      expected: checksumOf(previous.metadata),
      segments: copies.slice(1).map((copy) => copy.path),
      range: { chain: base.chain, from: base.from, to: base.to, until: null },
      target: path,
      targetFrom: target.from,
      targetTo: target.to,
      tempPath
    }
    const commit = await runInWorker<number | null>('prove-chain', job, options)
    return commit === null
      ? { ok: false, at, from: previous.id, problems: [`the changes stored after backup ${previous.id}, replayed onto it, do not give backup ${metadata.id} at any commit from ${target.from} to ${target.to}`] }
      : { ok: true, at, from: previous.id, commit, problems: [] }
  } catch (err) {
    if (!(err instanceof TaskFailure)) throw err
    return { ok: false, at, from: previous.id, problems: [err.message] }
  } finally {
    await removeFile(tempPath)
    for (const copy of copies) await copy.release()
  }
}

/**
 * Runs in a worker thread: copies the earlier base, replays the chain onto it and compares it with the new base at
 * each commit the new base may hold. Returns the commit at which they match, or null.
 */
export async function proveChainTask (job: ProofJob, shouldStop: ShouldStop): Promise<number | null> {
  await copyBackup({ from: job.base, tempPath: job.tempPath, expected: job.expected }, shouldStop)
  const inReach = (commit: number): boolean => commit >= job.targetFrom && commit <= job.targetTo
  // Nothing committed between the two bases: the earlier one, as it is, may already be the answer.
  if (job.range.from === job.range.to && inReach(job.range.to) && sameDatabase(job.tempPath, job.target)) return job.range.to
  let matched: number | null = null
  replayChain(job.tempPath, { segments: job.segments, range: job.range }, shouldStop, (commit) => {
    if (shouldStop()) throw new TaskAborted()
    if (commit > job.targetTo) return 'stop'
    if (!inReach(commit) || !sameDatabase(job.tempPath, job.target)) return undefined
    matched = commit
    return 'stop'
  })
  return matched
}

/** The same pages, page 1's header aside. */
function sameDatabase (a: string, b: string): boolean {
  const first = openSync(a, 'r')
  const second = openSync(b, 'r')
  try {
    if (fstatSync(first).size !== fstatSync(second).size) return false
    const left = Buffer.allocUnsafe(CHUNK_BYTES)
    const right = Buffer.allocUnsafe(CHUNK_BYTES)
    for (let position = 0; ; position += CHUNK_BYTES) {
      const read = readSync(first, left, 0, CHUNK_BYTES, position)
      if (readSync(second, right, 0, CHUNK_BYTES, position) !== read) return false
      if (read === 0) return true
      const start = position === 0 ? HEADER_BYTES : 0
      if (left.compare(right, start, read, start, read) !== 0) return false
    }
  } finally {
    closeSync(first)
    closeSync(second)
  }
}
