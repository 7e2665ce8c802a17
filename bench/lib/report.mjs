// Markdown tables for stdout and BENCHMARKS.md.
import { fmt } from './goals.mjs'

export function sizeTable (sizeMb, bytes, rows, rounds) {
  const lines = [
    `### ${sizeMb} MB (${fmt(bytes / 1024 / 1024, 1)} MiB file, ${rounds} rounds)`,
    '',
    '| method | time (median) | × copy limit | × the same plain copy | writer p50 × idle | writer p99 × idle | writer worst commit (idle worst) [backups of 1 s or more: runs where it came in their last 0.1 s] | commits/s × idle | writer errors | event loop longest delay (worst run) | event loop p99 | event loop busy (total) | longest delay less GC within it (worst run) | longest GC pause | longest delay of an idle process, same window (worst run) | host steal (worst run) | main thread run-queue wait | peak memory growth | deciding "unchanged" | copy correct |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'
  ]
  for (const { id, sameWork, summary: s } of rows) {
    lines.push('| ' + [
      id,
      `${fmt(s.timeMs, 1)} ms`,
      `${fmt(s.timeVsCopy, 2)}×`,
      sameWork ? `${fmt(s.timeVsSameWork, 2)}× ${sameWork}` : '—',
      `${fmt(s.writer.p50Ratio, 2)}×`,
      `${fmt(s.writer.p99Ratio, 2)}×`,
      `${fmt(s.writer.backupMax, 1)} ms (${fmt(s.writer.idleMax, 1)} ms)${s.timeMs >= 1000 ? ` [${s.writer.worstAtEnd}/${s.writer.runs}]` : ''}`,
      `${fmt(s.writer.rateRatio, 2)}×`,
      String(s.writer.errors),
      `${fmt(s.eventLoop.maxMs, 1)} ms (${fmt(s.eventLoop.worstMaxMs, 1)} ms)`,
      `${fmt(s.eventLoop.p99Ms, 1)} ms`,
      `${fmt(s.eventLoop.activeMs, 1)} ms`,
      `${fmt(s.eventLoop.withoutGcMs, 1)} ms (${fmt(s.eventLoop.worstWithoutGcMs, 1)} ms)`,
      `${fmt(s.eventLoop.longestGcMs, 1)} ms`,
      `${fmt(s.eventLoop.idleProcessMaxMs, 1)} ms (${fmt(s.eventLoop.worstIdleProcessMaxMs, 1)} ms)`,
      `${fmt(s.eventLoop.stealMs, 0)} ms (${fmt(s.eventLoop.worstStealMs, 0)} ms)`,
      `${fmt(s.eventLoop.runQueueMs, 1)} ms`,
      `${fmt(s.memory.growthMb, 1)} MB`,
      unchangedCell(s.unchanged),
      correctCell(s.checks)
    ].join(' | ') + ' |')
  }
  return lines.join('\n')
}

function unchangedCell (u) {
  if (!u) return '—'
  if (u.dataVersionMs !== undefined) return `${fmt(u.ms, 4)} ms (data_version ${fmt(u.dataVersionMs, 4)} ms)${u.notSkipped ? `, ${u.notSkipped} NOT skipped` : ''}`
  return `${fmt(u.ms, 1)} ms (sha256)`
}

function correctCell (c) {
  if (!c) return 'not checked (baseline)'
  if (c.correct === c.of) return `yes (${c.of}/${c.of})`
  const why = []
  if (c.missingRuns) why.push(`${c.missingRuns} missed commits (up to ${c.maxMissingRows} rows)`)
  if (c.oddCounts) why.push(`${c.oddCounts} torn (odd count)`)
  if (c.integrityFailures) why.push(`${c.integrityFailures} failed integrity_check`)
  return `**INCORRECT** ${c.of - c.correct}/${c.of}: ${why.join(', ')}`
}

export function phasesTable (phasesBySize) {
  const lines = [
    '| size | worker start (once, at ready) | raw copy (hashed, flushed) | quick_check | snapshot task (copy and check) | × copy limit | backup API page copy + fdatasync | copyFile | fsync | copy limit |',
    '|---|---|---|---|---|---|---|---|---|---|'
  ]
  for (const [sizeMb, p] of phasesBySize) {
    lines.push('| ' + [
      `${sizeMb} MB`,
      ms(p.workerStartMs), ms(p.rawCopyMs), ms(p.quickCheckMs), ms(p.pluginStepsMs),
      `${fmt(p.pluginStepsMs / p.copyLimitMs, 2)}×`,
      ms(p.pageCopyMs), ms(p.copyFileMs), ms(p.copyFsyncMs), ms(p.copyLimitMs)
    ].join(' | ') + ' |')
  }
  return lines.join('\n')
}

function ms (value) {
  return `${fmt(value, 1)} ms`
}

export function goalsTable (sizeMb, goals) {
  const lines = [
    `Goals (plugin, WAL, ${sizeMb} MB${sizeMb === 1000 ? '' : ' — NOT the 1 GB the goals are set for'}, writer in another process; medians of the runs):`,
    '',
    '| goal | measured | result |',
    '|---|---|---|'
  ]
  for (const g of goals) lines.push(`| ${g.goal} | ${g.shown} | ${g.pass ? 'PASS' : '**FAIL**'} |`)
  return lines.join('\n')
}
