// What continuous backup costs a running app, measured against the same app with snapshots only, in one run:
// interleaved rounds (off, on, off, on…), each a fresh copy of a ~50 MB WAL database and a fresh app process.
//   node bench/continuous/overhead.mjs [--seconds 60] [--rate 500] [--app-rate 20] [--rounds 3] [--warmup 5] [--big] [--keep]
//     [--variants off,on,on-wal64m,off-big,on-big]   (a subset, e.g. --variants on --seconds 600 for the memory check alone)
// Per round and variant, over a window of --seconds after a warm-up (and after the first snapshot, so that no
// snapshot runs inside it): commit latency of a writer in another process (--rate commits/s) and of the app's own
// connection (--app-rate; 0 for none); the app's event-loop delay; the WAL file's size every 50 ms; the app's RSS
// every second; bytes and files written into the destination. Round 1 also runs continuous with walSizeLimit 64 MiB. --big adds
// one more round (off, on) on a ~500 MB database, to check that the segments do not depend on the database size.
// --seconds 600 --rounds 1 is the "memory flat over 10 minutes" check.
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { describeMachine, machineLine } from '../lib/machine.mjs'
import { ensureDatabase } from '../lib/database.mjs'
import { shutdown } from './lib/procs.mjs'
import { CACHE_DIR } from './lib/paths.mjs'
import { prepare as preparePlugin } from './lib/plugin.mjs'
import { measureRound } from './lib/overhead-round.mjs'
import { wasInterrupted } from './lib/interrupted.mjs'
import { summarizeVariant, writerTable, eventLoopTable, walTable, memoryTable, costRows, costTable, warnings } from './lib/overhead-report.mjs'

const USAGE = 'usage: node bench/continuous/overhead.mjs [--seconds 60] [--rate 500] [--app-rate 20] [--rounds 3] [--warmup 5] [--size-mb 50] [--big] [--big-mb 500] [--variants off,on,…] [--keep]'
let args
try {
  args = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      rate: { type: 'string', default: '500' },
      'app-rate': { type: 'string', default: '20' },
      rounds: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '5' },
      'size-mb': { type: 'string', default: '50' },
      big: { type: 'boolean', default: false },
      'big-mb': { type: 'string', default: '500' },
      variants: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  }).values
} catch (err) {
  console.error(`${err.message}\n${USAGE}`)
  process.exit(2)
}
if (args.help) {
  console.log(USAGE)
  process.exit(0)
}
const seconds = Number(args.seconds)
const rate = Number(args.rate)
const appRate = Number(args['app-rate'])
const rounds = Number(args.rounds)
const warmupSeconds = Number(args.warmup)
const sizeMb = Number(args['size-mb'])
const bigMb = Number(args['big-mb'])
const VARIANT_IDS = ['off', 'on', 'on-wal64m', 'off-big', 'on-big']
const only = args.variants === undefined ? null : args.variants.split(',').map((id) => id.trim())
if (!(seconds >= 2) || !(rate > 0 && rate <= 2000) || !(appRate >= 0 && appRate <= 500) || !Number.isInteger(rounds) || rounds < 1 ||
    !(warmupSeconds >= 0) || !Number.isInteger(sizeMb) || sizeMb < 1 || !Number.isInteger(bigMb) || bigMb < 1 ||
    (only && only.some((id) => !VARIANT_IDS.includes(id)))) {
  console.error(USAGE)
  process.exit(2)
}

// The plugin's default, and a larger limit to show what it trades.
const DEFAULT_WAL_SIZE_LIMIT = 4 * 1024 * 1024
const LARGE_WAL_SIZE_LIMIT = 64 * 1024 * 1024
const log = (message) => console.error(`[overhead] ${message}`)

function variants (baseDb, bigDb) {
  const list = [
    { id: 'off', label: 'snapshots only (off)', continuous: false, walSizeLimit: null, baseline: null, sizeMb, baseDb },
    { id: 'on', label: 'continuous (on)', continuous: true, walSizeLimit: DEFAULT_WAL_SIZE_LIMIT, baseline: 'off', sizeMb, baseDb },
    { id: 'on-wal64m', label: 'continuous, walSizeLimit 64 MiB (round 1 only)', continuous: { walSizeLimit: LARGE_WAL_SIZE_LIMIT }, walSizeLimit: LARGE_WAL_SIZE_LIMIT, baseline: 'off', sizeMb, baseDb }
  ]
  if (bigDb) {
    list.push(
      { id: 'off-big', label: `snapshots only (off), ${bigMb} MB db`, continuous: false, walSizeLimit: null, baseline: null, sizeMb: bigMb, baseDb: bigDb },
      { id: 'on-big', label: `continuous (on), ${bigMb} MB db`, continuous: true, walSizeLimit: DEFAULT_WAL_SIZE_LIMIT, baseline: 'off-big', sizeMb: bigMb, baseDb: bigDb }
    )
  }
  return list
}

/** Which variants each round runs: off and on, alternating; round 1 also the large WAL limit; --big one more round. */
function schedule (all) {
  const byId = Object.fromEntries(all.map((v) => [v.id, v]))
  const plan = []
  for (let round = 1; round <= rounds; round++) {
    plan.push({ round, variant: byId.off }, { round, variant: byId.on })
    if (round === 1) plan.push({ round, variant: byId['on-wal64m'] })
  }
  if (byId['off-big']) plan.push({ round: rounds + 1, variant: byId['off-big'] }, { round: rounds + 1, variant: byId['on-big'] })
  return only ? plan.filter(({ variant }) => only.includes(variant.id)) : plan
}

async function main () {
  const startedAt = new Date()
  mkdirSync(CACHE_DIR, { recursive: true })
  const machine = describeMachine()
  log(machineLine(machine))
  const plugin = await preparePlugin()
  log(`plugin: dist/ built at ${plugin.builtAt}`)
  const baseDb = ensureDatabase(sizeMb, 'wal', log)
  const bigDb = args.big || only?.some((id) => id.endsWith('-big')) ? ensureDatabase(bigMb, 'wal', log) : null
  const all = variants(baseDb, bigDb)
  const plan = schedule(all)
  const perRun = seconds + warmupSeconds + 10
  log(`${plan.length} runs of about ${perRun} s each (${fmtMinutes(plan.length * perRun)}), window ${seconds} s, writer ${rate}/s, app ${appRate}/s`)

  const results = { startedAt: startedAt.toISOString(), machine, plugin, args: { seconds, rate, appRate, rounds, warmupSeconds, sizeMb, big: args.big, bigMb }, records: [] }
  for (const [index, { round, variant }] of plan.entries()) {
    log(`run ${index + 1}/${plan.length}: round ${round}, ${variant.id}`)
    const record = await measureRound({ variant, round, seconds, warmupSeconds, rate, appRate, keep: args.keep, log })
    // Stopped by a signal: procs.mjs is killing the children and exits; there is nothing to report.
    if (wasInterrupted()) return
    results.records.push(record)
    if (!record.error) {
      log(`  writer p99 ${record.writer.p99.toFixed(2)} ms max ${record.writer.max.toFixed(1)} ms; app p99 ${record.app?.p99.toFixed(2) ?? '—'} ms; ` +
        `loop max ${record.eventLoop.maxMs.toFixed(1)} ms; WAL max ${(record.wal.maxBytes / 2 ** 20).toFixed(1)} MiB; ` +
        `RSS ${record.memory.startMb.toFixed(0)}→${record.memory.endMb.toFixed(0)} MB; segments ${record.destination.written.segments.files} files ${(record.destination.written.segments.bytes / 1024).toFixed(0)} KiB`)
    }
  }

  const shown = all.map((v) => ({ ...v, baseDb: undefined, summary: summarizeVariant(results.records.filter((r) => r.variant === v.id)) }))
    .filter((v) => v.summary.rounds > 0)
  results.summary = Object.fromEntries(shown.map((v) => [v.id, v.summary]))
  const byId = Object.fromEntries(shown.map((v) => [v.id, v]))
  const sections = [
    `Measured on: ${machineLine(machine)}; dist/ built ${plugin.builtAt}; synchronous = ${results.records.find((r) => r.synchronous !== undefined)?.synchronous ?? 'n/a'} (the connection's default).`,
    writerTable(shown, results.records, { rate, appRate }),
    eventLoopTable(shown, results.records),
    walTable(shown),
    memoryTable(shown)
  ]
  // Costed from the continuous rounds at the main size (or the big ones, when only they ran).
  const [main, mainOff, extra] = byId.on?.summary.ok ? [byId.on, byId.off, byId['on-big']] : [byId['on-big'], byId['off-big'], undefined]
  if (main?.summary.ok) {
    const cost = costRows(main, mainOff, extra?.summary.ok ? [extra] : [])
    results.cost = cost
    sections.push(costTable(cost, { commitsPerHour: main.summary.cost.commitsPerHour }))
  }
  const notes = warnings(results.records)
  if (notes.length) sections.push('WARNINGS:\n' + notes.map((note) => `- ${note}`).join('\n'))
  results.tables = sections
  results.finishedAt = new Date().toISOString()
  console.log('\n' + sections.join('\n\n') + '\n')

  const file = join(CACHE_DIR, `continuous-overhead-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n')
  log(`results written to ${file} (${((Date.now() - startedAt) / 1000).toFixed(0)} s)`)
  if (results.records.some((r) => r.error)) process.exitCode = 1
}

function fmtMinutes (s) {
  return s < 120 ? `${s} s` : `${(s / 60).toFixed(0)} min`
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
}).finally(shutdown)
