// How much committed data a crash loses: the app is SIGKILLed at a random moment, together with its backup tool,
// and the database is restored from the backup destination alone (the machine is gone). Litestream v0.3.13 and
// this project's plugin in continuous mode side by side, the same writer workload for both.
//   node bench/continuous/rpo.mjs [--kills 5] [--method litestream|plugin|both] [--rate 250] [--checkpoint-test] [--keep]
// --checkpoint-test adds one run per tool (and one with no tool) in which the app calls
// PRAGMA wal_checkpoint(TRUNCATE) every 2 s; --keep keeps every run's directory (failed ones are always kept).
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { describeMachine, machineLine } from '../lib/machine.mjs'
import { measureKill } from './lib/kill.mjs'
import { summarizeKills, killTable, checkpointTable } from './lib/report.mjs'
import { shutdown } from './lib/procs.mjs'
import { CACHE_DIR } from './lib/paths.mjs'
import * as litestream from './lib/litestream.mjs'
import * as plugin from './lib/plugin.mjs'
import * as none from './lib/none.mjs'

const USAGE = 'usage: node bench/continuous/rpo.mjs [--kills N] [--method litestream|plugin|both] [--rate 250] [--checkpoint-test] [--keep]'
let args
try {
  args = parseArgs({
    options: {
      kills: { type: 'string', default: '5' },
      method: { type: 'string', default: 'both' },
      rate: { type: 'string', default: '250' },
      'checkpoint-test': { type: 'boolean', default: false },
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
const kills = Number(args.kills)
const rate = Number(args.rate)
const METHODS = { litestream, plugin }
const chosen = args.method === 'both' ? ['litestream', 'plugin'] : [args.method]
if (!Number.isInteger(kills) || kills < 0 || !(rate > 0 && rate <= 2000) || chosen.some((m) => !METHODS[m])) {
  console.error(USAGE)
  process.exit(2)
}
// A method whose first attempts all fail (typically: it cannot start) is not tried again this many times over.
const GIVE_UP_AFTER = 2

const log = (message) => console.error(`[rpo] ${message}`)

async function main () {
  const startedAt = new Date()
  // describeMachine() looks at the disk holding the cache directory.
  mkdirSync(CACHE_DIR, { recursive: true })
  const machine = describeMachine()
  log(machineLine(machine))
  const results = { startedAt: startedAt.toISOString(), machine, args: { kills, rate, methods: chosen, checkpointTest: args['checkpoint-test'] }, tools: {}, kills: [], checkpoint: [] }

  // A tool that cannot be prepared is reported and left out; the other one still runs.
  const methods = []
  const skipped = {}
  for (const id of chosen) {
    try {
      results.tools[id] = await METHODS[id].prepare(log)
      log(`${id}: ${JSON.stringify(results.tools[id])}`)
      methods.push(METHODS[id])
    } catch (err) {
      skipped[id] = `cannot prepare: ${err.message}`
      log(`${id}: ${skipped[id]}`)
    }
  }

  // Rounds: each method once per round, so that drift of the shared machine hits all of them alike.
  for (let round = 1; round <= kills; round++) {
    for (const method of methods) {
      if (skipped[method.name]) continue
      log(`kill ${round}/${kills}: ${method.name}`)
      const record = await measureKill({ method, scenario: 'kill', rate, keep: args.keep, log })
      record.round = round
      results.kills.push(record)
      if (!record.error) {
        log(`  lost ${record.check.lostMs} ms (${record.check.lostCommits} commits of ${record.committed}), restore ${record.restoreMs.toFixed(0)} ms`)
      }
      const mine = results.kills.filter((r) => r.method === method.name)
      if (mine.length >= GIVE_UP_AFTER && mine.every((r) => r.error)) {
        skipped[method.name] = `the first ${mine.length} runs all failed (${mine[0].error})`
        log(`${method.name}: giving up, ${skipped[method.name]}`)
      }
    }
  }

  if (args['checkpoint-test']) {
    for (const method of [none, ...methods]) {
      if (skipped[method.name]) {
        log(`checkpoint test: ${method.name} skipped (${skipped[method.name]})`)
        continue
      }
      log(`checkpoint test: ${method.name}`)
      const record = await measureKill({ method, scenario: 'checkpoint', rate, keep: args.keep, log })
      results.checkpoint.push(record)
      const calls = record.checkpoints ?? []
      log(`  ${calls.map((c) => `${c.ms.toFixed(0)} ms${c.busy === 1 ? ' BUSY' : ''}${c.error ? ` ${c.error}` : ''}`).join(', ') || 'no calls'}`)
    }
  }

  results.summary = Object.fromEntries(chosen.map((id) => [id, { ...summarizeKills(results.kills.filter((r) => r.method === id)), skipped: skipped[id] ?? null }]))
  results.finishedAt = new Date().toISOString()
  const sections = []
  if (kills > 0) sections.push(killTable(chosen.map((id) => ({ method: id, summary: results.summary[id], skipped: skipped[id] })), rate))
  const notes = [...new Set([...results.kills, ...results.checkpoint].flatMap((r) => (r.notes ?? []).map((note) => `${r.method}: ${note}`)))]
  if (notes.length) sections.push('WARNINGS:\n' + notes.map((note) => `- ${note}`).join('\n'))
  const failed = results.kills.filter((r) => r.error)
  if (failed.length) sections.push('FAILURES:\n' + failed.map((r) => `- ${r.method} kill ${r.round}: ${r.error}`).join('\n'))
  if (results.checkpoint.length) sections.push(checkpointTable(results.checkpoint))
  console.log('\n' + sections.join('\n\n') + '\n')

  const file = join(CACHE_DIR, `continuous-rpo-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n')
  log(`results written to ${file} (${((Date.now() - startedAt) / 1000).toFixed(0)} s)`)
  if (failed.length || Object.keys(skipped).length) process.exitCode = 1
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
}).finally(shutdown)
