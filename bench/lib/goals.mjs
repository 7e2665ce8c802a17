// The plugin's targets, judged at the largest size measured (1 GB in a full run), WAL mode, writer in another process.
export function judgeGoals (summary) {
  const w = summary.writer
  const goals = [
    {
      goal: 'writer p99 during backup <= 1.5x idle p99',
      value: w.p99Ratio,
      shown: `${fmt(w.p99Ratio, 2)}x (${fmt(w.backupP99, 3)} vs ${fmt(w.idleP99, 3)} ms)`,
      pass: w.p99Ratio !== null && w.p99Ratio <= 1.5
    },
    {
      goal: 'worst commit <= 25 ms or <= 2x worst with no backup',
      value: w.backupMax,
      shown: `${fmt(w.backupMax, 1)} ms; ${fmt(w.maxRatio, 2)}x idle worst ${fmt(w.idleMax, 1)} ms`,
      pass: w.backupMax !== null && (w.backupMax <= 25 || (w.maxRatio !== null && w.maxRatio <= 2))
    },
    {
      goal: 'event loop never blocked > 20 ms',
      value: summary.eventLoop.worstMaxMs,
      shown: `worst ${fmt(summary.eventLoop.worstMaxMs, 1)} ms (median ${fmt(summary.eventLoop.maxMs, 1)} ms)`,
      pass: summary.eventLoop.worstMaxMs !== null && summary.eventLoop.worstMaxMs <= 20
    },
    {
      goal: 'peak memory growth <= 64 MB',
      value: summary.memory.worstGrowthMb,
      shown: `worst ${fmt(summary.memory.worstGrowthMb, 1)} MB (median ${fmt(summary.memory.growthMb, 1)} MB)`,
      pass: summary.memory.worstGrowthMb !== null && summary.memory.worstGrowthMb <= 64
    },
    {
      goal: 'deciding "unchanged" <= 0.1 ms',
      value: summary.unchanged?.ms ?? null,
      shown: `now() skip ${fmt(summary.unchanged?.ms, 4)} ms; data_version ${fmt(summary.unchanged?.dataVersionMs, 4)} ms`,
      pass: summary.unchanged?.ms !== null && summary.unchanged?.ms !== undefined && summary.unchanged.ms <= 0.1 && summary.unchanged.notSkipped === 0
    },
    {
      goal: 'backup time <= 4x copy limit',
      value: summary.timeVsCopy,
      shown: `${fmt(summary.timeVsCopy, 2)}x`,
      pass: summary.timeVsCopy !== null && summary.timeVsCopy <= 4
    },
    {
      goal: 'every copy correct',
      value: summary.checks?.correct ?? null,
      shown: summary.checks ? `${summary.checks.correct}/${summary.checks.of}` : 'n/a',
      pass: summary.checks !== null && summary.checks.correct === summary.checks.of
    }
  ]
  return goals
}

export function fmt (value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a'
  return value.toFixed(digits)
}
