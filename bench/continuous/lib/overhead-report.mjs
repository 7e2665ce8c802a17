// Summaries and markdown tables of the overhead benchmark. Figures are medians over the rounds of a variant;
// on/off ratios are taken within a round (same minute, same machine state) and then their median is reported.
import { median, max, ratio } from '../../lib/stats.mjs'
import { fmt } from '../../lib/goals.mjs'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const HOUR = 3600
// Snapshots on S3 are multipart uploads of 8 MiB parts (the plugin's default partSize), plus a PUT of the record.
const S3_PART = 8 * MiB

export function summarizeVariant (records) {
  const ok = records.filter((r) => !r.error)
  const pick = (fn) => ok.map(fn).filter((v) => v !== null && v !== undefined && !Number.isNaN(v))
  const perHour = (fn) => median(pick((r) => fn(r) / r.windowSeconds * HOUR))
  // The app's figures are null with --app-rate 0.
  const commits = (who) => ({
    p50: median(pick((r) => r[who]?.p50)),
    p99: median(pick((r) => r[who]?.p99)),
    max: median(pick((r) => r[who]?.max)),
    worstMax: max(pick((r) => r[who]?.max)),
    commitsPerSec: median(pick((r) => r[who]?.commitsPerSec)),
    over10ms: median(pick((r) => r[who]?.over10ms)),
    errors: pick((r) => r[who]?.errors).reduce((a, b) => a + b, 0)
  })
  return {
    rounds: records.length,
    ok: ok.length,
    failures: records.filter((r) => r.error).map((r) => `round ${r.round}: ${r.error}`),
    sizeMb: records[0]?.sizeMb ?? null,
    windowSeconds: median(pick((r) => r.windowSeconds)),
    writer: commits('writer'),
    app: commits('app'),
    eventLoop: {
      maxMs: median(pick((r) => r.eventLoop.maxMs)),
      worstMaxMs: max(pick((r) => r.eventLoop.maxMs)),
      p99Ms: median(pick((r) => r.eventLoop.p99Ms)),
      meanMs: median(pick((r) => r.eventLoop.meanMs)),
      utilization: median(pick((r) => r.eventLoop.utilization))
    },
    cpuPercent: median(pick((r) => r.cpuPercent)),
    wal: {
      maxBytes: median(pick((r) => r.wal.maxBytes)),
      worstBytes: max(pick((r) => r.wal.maxBytes)),
      lastBytes: median(pick((r) => r.wal.lastBytes)),
      pluginWalBytes: median(pick((r) => r.statusAfter?.continuous?.walBytes))
    },
    memory: {
      startMb: median(pick((r) => r.memory.startMb)),
      maxMb: median(pick((r) => r.memory.maxMb)),
      endMb: median(pick((r) => r.memory.endMb)),
      slopeMbPerMin: median(pick((r) => r.memory.slopeMbPerMin)),
      worstSlopeMbPerMin: max(pick((r) => r.memory.slopeMbPerMin)),
      lateSlopeMbPerMin: median(pick((r) => r.memory.lateSlopeMbPerMin)),
      worstLateSlopeMbPerMin: max(pick((r) => r.memory.lateSlopeMbPerMin))
    },
    cost: {
      dbBytes: median(pick((r) => r.dbBytes)),
      segmentBytesPerHour: perHour((r) => r.destination.written.segments.bytes),
      segmentFilesPerHour: perHour((r) => r.destination.written.segments.files),
      snapshotBytesInWindow: pick((r) => r.destination.written.snapshots.bytes).reduce((a, b) => a + b, 0),
      // Snapshots inside the window happen only when a chain breaks (continuous) and should be none.
      snapshotBytesPerHour: perHour((r) => r.destination.written.snapshots.bytes),
      snapshotFilesPerHour: perHour((r) => r.destination.written.snapshots.files),
      // What the writers committed, for a bytes-per-commit figure.
      commitsPerHour: median(pick((r) => (r.writer.commits + (r.app?.commits ?? 0)) / r.windowSeconds * HOUR))
    },
    firstSnapshotMs: median(pick((r) => r.firstSnapshotMs)),
    closeMs: median(pick((r) => r.closeMs)),
    snapshotsInWindow: pick((r) => r.snapshotsInWindow).reduce((a, b) => a + b, 0)
  }
}

/** Median over rounds of `variant`'s figure ÷ `baseline`'s figure in the same round. */
export function pairedRatio (records, variant, baseline, fn) {
  const byRound = new Map(records.filter((r) => r.variant === baseline && !r.error).map((r) => [r.round, r]))
  return median(records.filter((r) => r.variant === variant && !r.error).map((r) => {
    const base = byRound.get(r.round)
    return base ? ratio(fn(r), fn(base)) : null
  }))
}

function ms (value, digits = 2) {
  return value === null || value === undefined ? 'n/a' : `${fmt(value, digits)} ms`
}

function unit (value, digits, name) {
  return value === null || value === undefined ? 'n/a' : `${fmt(value, digits)} ${name}`
}

function mib (bytes, digits = 1) {
  return bytes === null || bytes === undefined ? 'n/a' : `${fmt(bytes / MiB, digits)} MiB`
}

function bytesCell (bytes) {
  if (bytes === null || bytes === undefined) return 'n/a'
  if (bytes >= GiB) return `${fmt(bytes / GiB, 2)} GiB`
  return `${fmt(bytes / MiB, 1)} MiB`
}

function times (value) {
  return value === null || value === undefined ? '—' : `${fmt(value, 2)}×`
}

function variantCell (v) {
  return `${v.label}${v.summary.failures.length ? ` (**${v.summary.failures.length} failed**)` : ''}`
}

/** `variants`: [{ id, label, baseline (id of the off variant it is compared with, or null), summary }] */
export function writerTable (variants, records, { rate, appRate }) {
  const lines = [
    `Commit latency (one small row per transaction, timer-driven): writer in another process at ${rate}/s, the app's own connection at ${appRate ? `${appRate}/s` : '0/s (not writing)'}. Medians over rounds; on/off ratios within a round. A snapshot published inside the window (a new chain's base) spoils its round:`,
    '',
    '| variant | rounds | other process p50 / p99 / max | p99 on/off | commits/s | app p50 / p99 / max | app p99 on/off | commits > 10 ms (other / app) | errors | snapshots in window |',
    '|---|---|---|---|---|---|---|---|---|---|'
  ]
  for (const v of variants) {
    const s = v.summary
    lines.push('| ' + [
      variantCell(v),
      String(s.ok),
      `${ms(s.writer.p50, 3)} / ${ms(s.writer.p99)} / ${ms(s.writer.max, 1)}`,
      v.baseline ? times(pairedRatio(records, v.id, v.baseline, (r) => r.writer.p99)) : '—',
      fmt(s.writer.commitsPerSec, 0),
      `${ms(s.app.p50, 3)} / ${ms(s.app.p99)} / ${ms(s.app.max, 1)}`,
      v.baseline ? times(pairedRatio(records, v.id, v.baseline, (r) => r.app?.p99 ?? null)) : '—',
      `${fmt(s.writer.over10ms, 0)} / ${fmt(s.app.over10ms, 0)}`,
      `${s.writer.errors + s.app.errors}`,
      s.snapshotsInWindow ? `**${s.snapshotsInWindow}**` : '0'
    ].join(' | ') + ' |')
  }
  return lines.join('\n')
}

export function eventLoopTable (variants, records) {
  const lines = [
    'The app\'s event loop over the window (monitorEventLoopDelay, resolution 1 ms), and the CPU the app process used (all its threads, the follower\'s included):',
    '',
    '| variant | delay max (median / worst round) | max on/off | delay p99 | delay mean | loop utilization | app CPU |',
    '|---|---|---|---|---|---|---|'
  ]
  for (const v of variants) {
    const s = v.summary
    lines.push('| ' + [
      variantCell(v),
      `${ms(s.eventLoop.maxMs, 1)} / ${ms(s.eventLoop.worstMaxMs, 1)}`,
      v.baseline ? times(pairedRatio(records, v.id, v.baseline, (r) => r.eventLoop.maxMs)) : '—',
      ms(s.eventLoop.p99Ms, 1),
      ms(s.eventLoop.meanMs, 2),
      s.eventLoop.utilization === null ? 'n/a' : `${fmt(s.eventLoop.utilization * 100, 1)} %`,
      s.cpuPercent === null ? 'n/a' : `${fmt(s.cpuPercent, 1)} %`
    ].join(' | ') + ' |')
  }
  return lines.join('\n')
}

export function walTable (variants) {
  const lines = [
    'Size of `<db>-wal`, sampled every 50 ms over the window (SQLite reuses the file from its start, so the file size is its high-water mark). Snapshots only: SQLite\'s automatic checkpoint (1000 pages) restarts the WAL; continuous: the plugin checkpoints once the WAL in use passes `walSizeLimit` (default 64 MiB):',
    '',
    '| variant | walSizeLimit | WAL file max (median / worst round) | at the window\'s end | plugin status walBytes |',
    '|---|---|---|---|---|'
  ]
  for (const v of variants) {
    const s = v.summary
    lines.push('| ' + [
      variantCell(v),
      v.walSizeLimit === null ? '— (snapshots only)' : mib(v.walSizeLimit, 0),
      `${mib(s.wal.maxBytes)} / ${mib(s.wal.worstBytes)}`,
      mib(s.wal.lastBytes),
      v.walSizeLimit === null ? '—' : mib(s.wal.pluginWalBytes)
    ].join(' | ') + ' |')
  }
  return lines.join('\n')
}

export function memoryTable (variants) {
  const lines = [
    'The app\'s RSS (/proc, every second over the window); slopes by least squares, over the whole window and over its second half (after the caches filled). "Flat" is a second-half slope near 0 over a long window (`--seconds 600`):',
    '',
    '| variant | window | RSS start | RSS max | RSS end | slope, whole window (median / worst round) | slope, second half (median / worst round) |',
    '|---|---|---|---|---|---|---|'
  ]
  for (const v of variants) {
    const s = v.summary
    lines.push('| ' + [
      variantCell(v),
      unit(s.windowSeconds, 0, 's'),
      unit(s.memory.startMb, 1, 'MB'),
      unit(s.memory.maxMb, 1, 'MB'),
      unit(s.memory.endMb, 1, 'MB'),
      `${fmt(s.memory.slopeMbPerMin, 2)} / ${fmt(s.memory.worstSlopeMbPerMin, 2)} MB/min`,
      `${fmt(s.memory.lateSlopeMbPerMin, 2)} / ${fmt(s.memory.worstLateSlopeMbPerMin, 2)} MB/min`
    ].join(' | ') + ' |')
  }
  return lines.join('\n')
}

/** S3 requests to store a file of `bytes`: one PutObject up to a part, else create + parts + complete. */
export function s3Requests (bytes) {
  const parts = Math.max(1, Math.ceil(bytes / S3_PART))
  return parts === 1 ? 1 : parts + 2
}

/** Per hour, for a database of `dbBytes`: what snapshots every `minutes` cost (a .sqlite and its .json each). */
export function snapshotCost (dbBytes, minutes) {
  const runs = 60 / minutes
  return { bytes: dbBytes * runs, files: 2 * runs, requests: (s3Requests(dbBytes) + 1) * runs }
}

/**
 * The cost rows: continuous as measured (segments; the same at any database size for the same writes), plus its
 * daily base; snapshots-only computed as database size × runs per hour, at the measured size and at 1 GiB.
 */
export function costRows (on, off, extra = []) {
  const s = on.summary
  const dbBytes = s.cost.dbBytes ?? off?.summary.cost.dbBytes
  const segments = { bytes: s.cost.segmentBytesPerHour, files: s.cost.segmentFilesPerHour, requests: s.cost.segmentFilesPerHour }
  const withBase = (size) => {
    const base = snapshotCost(size, 24 * 60)
    return { bytes: segments.bytes + base.bytes, files: segments.files + base.files, requests: segments.requests + base.requests }
  }
  const rows = [
    { backup: `continuous, segments only (measured, ${fmt(s.windowSeconds, 0)} s window)`, here: segments, gib: segments, how: 'measured; does not depend on the database size' },
    { backup: 'continuous + a base snapshot a day (`interval: \'24h\'`)', here: withBase(dbBytes), gib: withBase(GiB), how: 'segments measured + database size ÷ 24' },
    { backup: 'snapshots only, every 10 min', here: snapshotCost(dbBytes, 10), gib: snapshotCost(GiB, 10), how: 'database size × 6' },
    { backup: 'snapshots only, every 1 min', here: snapshotCost(dbBytes, 1), gib: snapshotCost(GiB, 1), how: 'database size × 60' }
  ]
  if (s.cost.snapshotBytesInWindow > 0) {
    // Bases the plugin took inside the window (new chains): a cost that grows with the database size.
    const bases = { bytes: s.cost.snapshotBytesPerHour, files: s.cost.snapshotFilesPerHour, requests: null }
    const scale = GiB / dbBytes
    rows.splice(1, 0, {
      backup: '**continuous, base snapshots taken inside the window** (chain breaks; median over rounds)',
      here: bases,
      gib: { bytes: bases.bytes * scale, files: bases.files, requests: null },
      how: 'measured; at 1 GiB scaled by size'
    })
  }
  for (const v of extra) {
    const c = v.summary.cost
    const measured = { bytes: c.segmentBytesPerHour, files: c.segmentFilesPerHour, requests: c.segmentFilesPerHour }
    rows.push({ backup: `continuous, segments only, ${v.label} (measured)`, here: measured, gib: measured, how: `measured at ${bytesCell(c.dbBytes)}` })
  }
  return { dbBytes, rows }
}

export function costTable ({ dbBytes, rows }, { commitsPerHour }) {
  const lines = [
    `Cost per hour: bytes stored in the destination and files created (≈ S3 PUT requests: one PutObject per segment; a snapshot is a multipart upload of 8 MiB parts plus its record; incompressible data assumed, gzip would shrink real databases). Measured database: ${bytesCell(dbBytes)}; ${fmt(commitsPerHour, 0)} commits/hour in the measured window:`,
    '',
    `| backup | bytes/hour (${bytesCell(dbBytes)} db) | files/hour | ≈ S3 requests/hour | bytes/hour (1 GiB db) | files/hour | ≈ S3 requests/hour | how |`,
    '|---|---|---|---|---|---|---|---|'
  ]
  for (const row of rows) {
    lines.push('| ' + [
      row.backup,
      bytesCell(row.here.bytes), fmt(row.here.files, 0), fmt(row.here.requests, 0),
      bytesCell(row.gib.bytes), fmt(row.gib.files, 0), fmt(row.gib.requests, 0),
      row.how
    ].join(' | ') + ' |')
  }
  return lines.join('\n')
}

/** Whatever should make a reader look twice: failures, snapshots inside the window, writer errors, plugin logs. */
export function warnings (records) {
  const notes = []
  const builds = [...new Set(records.map((r) => r.distBuiltAt).filter(Boolean))]
  if (builds.length > 1) notes.push(`dist/ was rebuilt during the run: the rounds ran ${builds.length} different builds (${builds.join(', ')}); compare with care`)
  for (const r of records) {
    const where = `${r.variant} round ${r.round}`
    if (r.error) notes.push(`${where}: FAILED: ${r.error}`)
    if (r.snapshotsInWindow > 0) notes.push(`${where}: ${r.snapshotsInWindow} snapshot(s) published inside the window (a new chain's base?)`)
    if (r.destination?.written.snapshots.files > 0) notes.push(`${where}: ${r.destination.written.snapshots.files} snapshot file(s) written inside the window`)
    for (const who of ['writer', 'app']) {
      if (r[who]?.errors) notes.push(`${where}: ${who} had ${r[who].errors} failed commits (${r[who].lastError})`)
    }
    const status = r.statusAfter?.continuous
    if (status?.lastError) notes.push(`${where}: plugin continuous.lastError ${JSON.stringify(status.lastError)}`)
    if (status && status.lagMs > 2000) notes.push(`${where}: plugin lagMs ${status.lagMs} at the window's end`)
    if (r.statusAfter?.lastError) notes.push(`${where}: plugin lastError ${JSON.stringify(r.statusAfter.lastError)}`)
    const seen = new Set()
    for (const line of r.logs ?? []) {
      const reason = line.reason && !String(line.msg).includes(line.reason) ? ` (${line.reason})` : ''
      const text = `log level ${line.level}: ${line.msg}${reason}${line.err ? ` [${line.err}]` : ''}`
      if (seen.has(text)) continue
      seen.add(text)
      notes.push(`${where}: ${text}`)
    }
  }
  return notes
}
