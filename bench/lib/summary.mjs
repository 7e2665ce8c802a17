// Turns the runs of one method at one size into medians and ratios. Ratios are taken within a run or a round
// (same moment, same machine state) and then their median is reported.
import { median, ratio, max } from './stats.mjs'

const MB = 1024 * 1024

/** `sameWorkRuns`: the runs of the plain copy that does the same work (configs.mjs), if there is one. */
export function summarize (runs, baselineRuns, unchanged, sameWorkRuns = []) {
  const byRound = new Map(baselineRuns.map((run) => [run.round, run]))
  const sameWorkByRound = new Map(sameWorkRuns.map((run) => [run.round, run]))
  const writerRatio = (key) => median(runs.map((run) => ratio(run.writer.backup[key], run.writer.idle[key])))
  const checked = runs.filter((run) => run.check)
  return {
    runs: runs.length,
    timeMs: median(runs.map((run) => run.durationMs)),
    timeVsCopy: median(runs.map((run) => ratio(run.durationMs, byRound.get(run.round)?.durationMs ?? null))),
    timeVsSameWork: median(runs.map((run) => ratio(run.durationMs, sameWorkByRound.get(run.round)?.durationMs ?? null))),
    // The plugin's first backup in the same process, before the measured one (undefined for the other methods).
    firstBackupMs: median(runs.map((run) => run.firstBackupMs).filter((ms) => ms !== undefined)),
    writer: {
      idleP50: median(runs.map((run) => run.writer.idle.p50)),
      idleP99: median(runs.map((run) => run.writer.idle.p99)),
      idleMax: median(runs.map((run) => run.writer.idle.max)),
      backupP50: median(runs.map((run) => run.writer.backup.p50)),
      backupP99: median(runs.map((run) => run.writer.backup.p99)),
      backupMax: median(runs.map((run) => run.writer.backup.max)),
      worstBackupMax: max(runs.map((run) => run.writer.backup.max ?? 0)),
      // Runs whose worst commit came in the backup's last 100 ms (the phase ends ~20 ms after the backup does): the
      // app's first checkpoint after the pin, when the backup did not take it.
      worstAtEnd: runs.filter((run) => run.writer.backup.worstBeforeEndMs !== null && run.writer.backup.worstBeforeEndMs <= 100).length,
      runs: runs.length,
      p50Ratio: writerRatio('p50'),
      p99Ratio: writerRatio('p99'),
      maxRatio: writerRatio('max'),
      rateRatio: writerRatio('commitsPerSec'),
      backupCommits: median(runs.map((run) => run.writer.backup.commits)),
      errors: runs.reduce((sum, run) => sum + run.writer.backup.errors + run.writer.idle.errors, 0)
    },
    eventLoop: {
      maxMs: median(runs.map((run) => run.eventLoop.maxMs)),
      worstMaxMs: max(runs.map((run) => run.eventLoop.maxMs)),
      p99Ms: median(runs.map((run) => run.eventLoop.p99Ms)),
      activeMs: median(runs.map((run) => run.eventLoop.activeMs)),
      withoutGcMs: median(runs.map((run) => run.eventLoop.withoutGcMs)),
      worstWithoutGcMs: max(runs.map((run) => run.eventLoop.withoutGcMs ?? 0)),
      longestGcMs: max(runs.map((run) => run.eventLoop.longestGcMs ?? 0)),
      stealMs: median(runs.map((run) => run.eventLoop.stealMs)),
      worstStealMs: max(runs.map((run) => run.eventLoop.stealMs ?? 0)),
      runQueueMs: median(runs.map((run) => run.eventLoop.runQueueMs)),
      // A process doing nothing but watch its loop, over the same windows: the machine's share of a delay.
      idleProcessMaxMs: median(runs.map((run) => run.eventLoop.idleProcessMaxMs)),
      worstIdleProcessMaxMs: max(runs.map((run) => run.eventLoop.idleProcessMaxMs ?? 0))
    },
    memory: {
      growthMb: median(runs.map((run) => run.memory.growth / MB)),
      worstGrowthMb: max(runs.map((run) => run.memory.growth / MB))
    },
    unchanged,
    checks: checked.length === 0
      ? null
      : {
          correct: checked.filter((run) => run.check.correct).length,
          of: checked.length,
          integrityFailures: checked.filter((run) => run.check.integrity !== 'ok').length,
          oddCounts: checked.filter((run) => !run.check.evenRows).length,
          missingRuns: checked.filter((run) => run.check.missing !== 0).length,
          maxMissingRows: max(checked.map((run) => run.check.missing))
        }
  }
}

/** The per-size cost of deciding "unchanged", as each method would decide it. */
export function unchangedFor (method, mode, unchangedRuns) {
  const runs = unchangedRuns.filter((run) => run.mode === mode)
  if (method === 'plugin') {
    return {
      kind: 'data_version + now() skip',
      dataVersionMs: median(runs.map((run) => run.dataVersionMs)),
      ms: median(runs.map((run) => run.skipPathMs)),
      notSkipped: runs.reduce((sum, run) => sum + run.notSkipped, 0)
    }
  }
  if (method === 'original') return { kind: 'sha256 of the file', ms: median(runs.map((run) => run.sha256Ms)) }
  return null
}
