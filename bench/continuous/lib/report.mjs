// Summaries and markdown tables of the crash runs.
import { median, max } from '../../lib/stats.mjs'
import { fmt } from '../../lib/goals.mjs'

export function summarizeKills (records) {
  const ok = records.filter((r) => !r.error)
  const pick = (fn) => ok.map(fn).filter((v) => v !== null && v !== undefined)
  return {
    kills: records.length,
    ok: ok.length,
    failures: records.length - ok.length,
    failureReasons: records.filter((r) => r.error).map((r) => r.error),
    lostMs: { median: median(pick((r) => r.check.lostMs)), worst: max(pick((r) => r.check.lostMs)) },
    lostCommits: { median: median(pick((r) => r.check.lostCommits)), worst: max(pick((r) => r.check.lostCommits)) },
    restoreMs: { median: median(pick((r) => r.restoreMs)), worst: max(pick((r) => r.restoreMs)) },
    destinationBytes: { median: median(pick((r) => r.destination.bytes)), worst: max(pick((r) => r.destination.bytes)) },
    destinationFiles: median(pick((r) => r.destination.files)),
    firstSnapshotMs: median(pick((r) => r.firstSnapshotMs)),
    holdMs: median(pick((r) => r.holdMs)),
    achievedRate: median(pick((r) => r.achievedRate)),
    lastCommitBeforeKillMs: max(pick((r) => r.lastCommitBeforeKillMs))
  }
}

export function killTable (rows, rate) {
  const lines = [
    `Crash at a random moment (SIGKILL, 2–5 s after the first snapshot), ${rate} commits/s, restored from the destination only:`,
    '',
    '| method | kills | lost ms (median) | lost ms (worst) | lost commits (median / worst) | restore time (median / worst) | destination (median) | run after 1st snapshot (median) | commits/s achieved | failures |',
    '|---|---|---|---|---|---|---|---|---|---|'
  ]
  for (const { method, summary: s, skipped } of rows) {
    lines.push('| ' + [
      method,
      String(s.kills),
      fmt(s.lostMs.median, 0),
      fmt(s.lostMs.worst, 0),
      `${fmt(s.lostCommits.median, 0)} / ${fmt(s.lostCommits.worst, 0)}`,
      `${fmt(s.restoreMs.median, 0)} / ${fmt(s.restoreMs.worst, 0)} ms`,
      s.destinationBytes.median === null ? 'n/a' : `${fmt(s.destinationBytes.median / 1024, 0)} KiB in ${fmt(s.destinationFiles, 0)} files`,
      `${fmt(s.holdMs === null ? null : s.holdMs / 1000, 1)} s`,
      fmt(s.achievedRate, 0),
      failureCell(s, skipped)
    ].join(' | ') + ' |')
  }
  return lines.join('\n')
}

function failureCell (s, skipped) {
  if (skipped && skipped.length > 140) skipped = skipped.slice(0, 140) + '…'
  if (s.kills === 0) return skipped ? `**DID NOT RUN**: ${skipped}` : '—'
  if (s.failures === 0) return `none (0/${s.kills})`
  return `**${s.failures}/${s.kills} FAILED**${skipped ? ` (rest skipped: ${skipped})` : ''}`
}

export function checkpointTable (records) {
  const lines = [
    'PRAGMA wal_checkpoint(TRUNCATE) on the app\'s own connection (busy_timeout 5000), 2 s after the previous call returned, backup tool running:',
    '',
    '| backup tool | calls | worst call | median call | returned busy | longest gap between two commits | lost at the kill (ms / commits) | restore |',
    '|---|---|---|---|---|---|---|---|'
  ]
  for (const r of records) {
    const calls = r.checkpoints ?? []
    const busy = calls.filter((c) => c.busy === 1).length
    const errors = calls.filter((c) => c.error).length
    lines.push('| ' + [
      r.method,
      String(calls.length),
      `${fmt(max(calls.map((c) => c.ms)), 0)} ms`,
      `${fmt(median(calls.map((c) => c.ms)), 0)} ms`,
      `${busy}/${calls.length}${errors ? `, ${errors} threw` : ''}`,
      `${fmt(r.reported?.maxGapMs, 0)} ms`,
      r.method === 'none' ? '—' : r.check ? `${fmt(r.check.lostMs, 0)} / ${r.check.lostCommits}` : 'n/a',
      r.error ? `**FAILED**: ${r.error}` : r.method === 'none' ? '—' : 'ok'
    ].join(' | ') + ' |')
  }
  return lines.join('\n')
}
