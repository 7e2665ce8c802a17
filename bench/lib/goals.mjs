// The plugin's targets. Judged at the largest size measured (1 GB in a full run), WAL mode, writer in another
// process, except the small-database one (at 1 MB). Ratios are taken within rounds against the plain copy.
export function judgeGoals (bySize) {
  const sizes = Object.keys(bySize).map(Number)
  const largest = Math.max(...sizes)
  const row = (size, id) => bySize[size]?.rows.find((r) => r.id === id)?.summary
  const plugin = row(largest, 'plugin-wal')
  const rotate = row(largest, 'plugin-wal-rotate') ?? plugin
  const copyRotate = row(largest, 'copy-rotate') ?? row(largest, 'copy')
  const limited = bySize[largest].rows.filter((r) => /MBps$/.test(r.id))
  const pluginRows = bySize[largest].rows.filter((r) => r.id.startsWith('plugin-wal'))
  const w = rotate.writer
  const limitFor = (s) => Math.max(25, 2 * s.writer.idleMax)
  const best = limited.map((r) => ({ id: r.id, s: r.summary })).sort((a, b) => a.s.writer.backupMax - b.s.writer.backupMax)[0]
  const worstLoop = Math.max(...pluginRows.map((r) => r.summary.eventLoop.worstMaxMs ?? 0))
  const worstIdleProcess = Math.max(...pluginRows.map((r) => r.summary.eventLoop.worstIdleProcessMaxMs ?? 0))
  const worstLoopWithoutGc = Math.max(...pluginRows.map((r) => r.summary.eventLoop.worstWithoutGcMs ?? 0))
  const worstMemory = Math.max(...pluginRows.map((r) => r.summary.memory.worstGrowthMb ?? 0))
  const small = row(Math.min(...sizes), 'plugin-wal')
  const checked = Object.values(bySize).flatMap((size) => size.rows.filter((r) => r.id.startsWith('plugin')).map((r) => r.summary.checks).filter(Boolean))
  return [
    {
      goal: 'worst commit during a backup with retention <= worst during copy+fsync with deletion',
      shown: `${fmt(w.backupMax, 1)} ms vs ${fmt(copyRotate.writer.backupMax, 1)} ms (${fmt(w.backupMax / copyRotate.writer.backupMax, 2)}x)`,
      pass: w.backupMax <= copyRotate.writer.backupMax
    },
    {
      goal: 'with maxRate: worst commit <= max(25 ms, 2x idle worst)',
      shown: best ? limited.map((r) => `${r.id.replace('plugin-wal-rotate-', '')}: ${fmt(r.summary.writer.backupMax, 1)} ms (limit ${fmt(limitFor(r.summary), 1)})`).join('; ') : 'no rate measured',
      pass: best !== undefined && best.s.writer.backupMax <= limitFor(best.s)
    },
    {
      goal: 'writer p99 during backup <= 1.5x idle p99',
      shown: `${fmt(w.p99Ratio, 2)}x with retention, ${fmt(plugin.writer.p99Ratio, 2)}x without (${fmt(w.backupP99, 3)} vs ${fmt(w.idleP99, 3)} ms)`,
      pass: w.p99Ratio !== null && w.p99Ratio <= 1.5
    },
    {
      goal: 'event loop never blocked > 20 ms',
      shown: `worst ${fmt(worstLoop, 1)} ms over every plugin configuration; ${fmt(worstLoopWithoutGc, 1)} ms less the app's own GC within it; an idle process over the same windows: worst ${fmt(worstIdleProcess, 1)} ms`,
      pass: worstLoop <= 20
    },
    {
      // Against the plain copy that leaves the destination as the plugin does (configs.mjs: sameWork), and shown
      // against the first copy too.
      goal: 'backup time <= 1.5x copy+fsync, no rate limit',
      shown: `${fmt(plugin.timeVsSameWork, 2)}x the same plain copy (copy-keep), ${fmt(rotate.timeVsSameWork, 2)}x with retention (copy-rotate); ${fmt(plugin.timeVsCopy, 2)}x a first copy (${fmt(plugin.timeMs, 0)} ms)`,
      pass: plugin.timeVsSameWork !== null && plugin.timeVsSameWork <= 1.5 && rotate.timeVsSameWork !== null && rotate.timeVsSameWork <= 1.5
    },
    {
      goal: `a ${Math.min(...sizes)} MB database backs up in <= 20 ms`,
      shown: `${fmt(small.timeMs, 1)} ms (copy+fsync ${fmt(row(Math.min(...sizes), 'copy').timeMs, 1)} ms); a process's first backup ${fmt(small.firstBackupMs, 1)} ms`,
      pass: small.timeMs <= 20
    },
    {
      goal: 'peak memory growth <= 64 MB',
      shown: `worst ${fmt(worstMemory, 1)} MB`,
      pass: worstMemory <= 64
    },
    {
      goal: 'deciding "unchanged" <= 0.1 ms',
      shown: `now() skip ${fmt(plugin.unchanged?.ms, 4)} ms; data_version ${fmt(plugin.unchanged?.dataVersionMs, 4)} ms`,
      pass: plugin.unchanged?.ms !== undefined && plugin.unchanged.ms <= 0.1 && plugin.unchanged.notSkipped === 0
    },
    {
      goal: 'every plugin copy correct',
      shown: `${checked.filter((c) => c.correct === c.of).length}/${checked.length} configurations`,
      pass: checked.every((c) => c.correct === c.of)
    }
  ]
}

export function fmt (value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a'
  return value.toFixed(digits)
}
