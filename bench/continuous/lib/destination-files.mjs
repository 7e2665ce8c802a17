// What a local destination holds, told apart as a bill would: segments (wal/<chain>/*.seg.gz), snapshots
// (<id>.sqlite and <id>.json), and the rest (the plugin's lock files, the segment being filled, temp files).
import { statSync } from 'node:fs'
import { basename, relative, sep } from 'node:path'
import { filesUnder } from './files.mjs'

const SNAPSHOT = /^[^.].*\.(sqlite|json)$/

export function kindOf (destinationDir, path) {
  const rel = relative(destinationDir, path)
  const name = basename(path)
  if (rel.startsWith(`wal${sep}`) && !name.startsWith('.') && /\.seg(\.gz)?$/.test(name)) return 'segments'
  if (!rel.includes(sep) && SNAPSHOT.test(name)) return 'snapshots'
  return 'other'
}

/** Every file under the destination with its size, at this moment. */
export function listDestination (destinationDir) {
  const files = new Map()
  for (const path of filesUnder(destinationDir)) {
    try {
      files.set(path, statSync(path).size)
    } catch {}
  }
  return files
}

/** Totals by kind of a listing: { segments: { bytes, files }, snapshots: …, other: … }. */
export function totals (destinationDir, files) {
  const result = { segments: { bytes: 0, files: 0 }, snapshots: { bytes: 0, files: 0 }, other: { bytes: 0, files: 0 } }
  for (const [path, size] of files) {
    const kind = result[kindOf(destinationDir, path)]
    kind.bytes += size
    kind.files++
  }
  return result
}

/**
 * What was written between two listings, by kind: the files that appeared (created), their bytes, plus what
 * files already there grew by; files that went away are counted apart (retention, pruning).
 */
export function written (destinationDir, before, after) {
  const result = {}
  for (const kind of ['segments', 'snapshots', 'other']) result[kind] = { bytes: 0, files: 0, removed: 0 }
  for (const [path, size] of after) {
    const kind = result[kindOf(destinationDir, path)]
    if (!before.has(path)) {
      kind.bytes += size
      kind.files++
    } else if (size > before.get(path)) {
      kind.bytes += size - before.get(path)
    }
  }
  for (const path of before.keys()) if (!after.has(path)) result[kindOf(destinationDir, path)].removed++
  return result
}
