// The full benchmark: the original design, the copy limit and the plugin side by side, at several sizes.
//   node bench/run.mjs [--quick] [--sizes=1,100,1000] [--runs=5] [--rates=200,100,50,25]
import { writeFileSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ensureDatabase, fileSize } from './lib/database.mjs'
import { measureBackup } from './lib/measure.mjs'
import { measureUnchanged } from './lib/unchanged.mjs'
import { measurePhases } from './lib/phases.mjs'
import { summarize, unchangedFor } from './lib/summary.mjs'
import { judgeGoals } from './lib/goals.mjs'
import { sizeTable, phasesTable, goalsTable } from './lib/report.mjs'
import { describeMachine, machineLine } from './lib/machine.mjs'
import { configsFor, BASELINE } from './lib/configs.mjs'
import { RESULTS_DIR, ensureDirs } from './lib/paths.mjs'
import { median } from './lib/stats.mjs'
import { killAll } from './lib/children.mjs'
import { withRetry } from './lib/retry.mjs'

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    sizes: { type: 'string' },
    runs: { type: 'string' },
    rates: { type: 'string' }
  }
})
const sizes = (args.sizes ?? (args.quick ? '1,100' : '1,100,1000')).split(',').map(Number)
// --quick keeps under two minutes: small sizes, 3 runs and a shorter idle window unless told otherwise.
const runs = Number(args.runs ?? (args.quick ? 3 : 5))
const idleMs = args.quick ? 1000 : 2000
// A backup of a small database lasts milliseconds, and one stall of a shared machine moves a median of two: the
// smallest sizes take at least 5 rounds (about a minute and a half each at 1 MB, thirteen configurations).
const SMALL_MB = 10
const SMALL_MIN_RUNS = 5
const roundsFor = (sizeMb) => sizeMb <= SMALL_MB ? Math.max(runs, SMALL_MIN_RUNS) : runs
// The plugin with maxRate, in MB/s: the curve of the writer's worst commit against the rate.
const rates = (args.rates ?? (args.quick ? '50' : '200,100,50,25')).split(',').filter(Boolean).map(Number)
const CONFIGS = configsFor(rates)
if (sizes.some((size) => !Number.isInteger(size) || size < 1) || !Number.isInteger(runs) || runs < 1 || rates.some((rate) => !(rate >= 1))) {
  console.error('usage: node bench/run.mjs [--quick] [--sizes=1,100,1000] [--runs=5] [--rates=200,100,50,25]')
  process.exit(2)
}

const log = (message) => console.error(`[bench] ${message}`)

// The package is measured as built in dist/; its build time tells which code a result file describes.
function pluginBuildTime () {
  return statSync(fileURLToPath(new URL('../dist/index.js', import.meta.url))).mtime.toISOString()
}

async function main () {
  ensureDirs()
  const machine = describeMachine()
  const startedAt = new Date()
  log(machineLine(machine))
  log(`sizes ${sizes.join(', ')} MB, ${runs} runs (at least ${SMALL_MIN_RUNS} up to ${SMALL_MB} MB), idle window ${idleMs} ms`)
  const results = { startedAt: startedAt.toISOString(), machine, pluginBuiltAt: pluginBuildTime(), sizes, runs, idleMs, rates, bySize: {} }
  const sections = []

  for (const sizeMb of sizes) {
    const paths = { wal: ensureDatabase(sizeMb, 'wal', log), delete: ensureDatabase(sizeMb, 'delete', log) }
    const records = []
    const unchangedRuns = []
    const phaseRuns = []
    const rounds = roundsFor(sizeMb)
    for (let round = 1; round <= rounds; round++) {
      // Each method once per round, so drift of the shared machine hits all of them alike.
      for (const config of CONFIGS) {
        log(`${sizeMb} MB, round ${round}/${rounds}: ${config.id}`)
        const record = await withRetry(() => measureBackup({ method: config.method, dbPath: paths[config.mode], idleMs, options: config.options }), log)
        records.push({ ...record, config: config.id, round })
      }
      for (const mode of ['wal', 'delete']) unchangedRuns.push({ mode, ...await withRetry(() => measureUnchanged(paths[mode]), log) })
      phaseRuns.push(await measurePhases(paths.wal))
    }

    const baselineRuns = records.filter((record) => record.config === BASELINE)
    const rows = CONFIGS.map((config) => ({
      id: config.id,
      sameWork: config.sameWork,
      summary: summarize(records.filter((record) => record.config === config.id), baselineRuns, unchangedFor(config.method, config.mode, unchangedRuns), records.filter((record) => record.config === config.sameWork))
    }))
    const phases = Object.fromEntries(Object.keys(phaseRuns[0]).map((key) => [key, median(phaseRuns.map((p) => p[key]))]))
    const bytes = fileSize(paths.wal)
    results.bySize[sizeMb] = { bytes, rows, phases, records, unchangedRuns, phaseRuns }
    sections.push(sizeTable(sizeMb, bytes, rows, rounds))
    // Printed as each size finishes, so a long run shows progress.
    console.log(sections.at(-1) + '\n')
  }

  const largest = Math.max(...sizes)
  results.goals = { sizeMb: largest, goals: judgeGoals(results.bySize) }
  const phaseSection = phasesTable(sizes.map((size) => [size, results.bySize[size].phases]))
  const goalSection = goalsTable(largest, results.goals.goals)
  console.log('Plugin snapshot steps timed directly (WAL, no writer, medians):\n\n' + phaseSection + '\n')
  console.log(goalSection)

  const file = join(RESULTS_DIR, `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n')
  log(`results written to ${file} (${((Date.now() - startedAt) / 1000).toFixed(0)} s)`)
}

main().catch((err) => {
  console.error(err)
  killAll()
  process.exitCode = 1
})
