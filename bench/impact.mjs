// What a backup costs the app, in one short table: a ~200 MB WAL database, a writer in another process, the
// plugin's backup against a plain file copy + fsync of the same file, median of 5 runs.
//   node bench/impact.mjs [--runs=5]
import { parseArgs } from 'node:util'
import { ensureDatabase } from './lib/database.mjs'
import { measureBackup } from './lib/measure.mjs'
import { median, ratio } from './lib/stats.mjs'
import { fmt } from './lib/goals.mjs'
import { describeMachine, machineLine } from './lib/machine.mjs'
import { killAll } from './lib/children.mjs'
import { withRetry } from './lib/retry.mjs'

const SIZE_MB = 200
const IDLE_MS = 2000
const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '5' } } })
const runs = Math.max(5, Number(args.runs) || 5)
const log = (message) => console.error(`[impact] ${message}`)

async function main () {
  log(machineLine(describeMachine()))
  const dbPath = ensureDatabase(SIZE_MB, 'wal', log)
  const copies = []
  const backups = []
  for (let round = 1; round <= runs; round++) {
    log(`round ${round}/${runs}`)
    // Alternated, so that drift of a shared machine hits both alike.
    copies.push(await withRetry(() => measureBackup({ method: 'copy', dbPath, idleMs: IDLE_MS }), log))
    backups.push(await withRetry(() => measureBackup({ method: 'plugin', dbPath, idleMs: IDLE_MS }), log))
  }
  const m = (pick) => median(backups.map(pick))
  const failures = backups.filter((run) => !run.check.correct).length
  const rows = [
    ['writer p99 commit: during backup / idle', `${fmt(m((r) => r.writer.backup.p99), 3)} / ${fmt(m((r) => r.writer.idle.p99), 3)} ms`, `${fmt(m((r) => ratio(r.writer.backup.p99, r.writer.idle.p99)), 2)}×`],
    ['writer worst commit: during backup / idle', `${fmt(m((r) => r.writer.backup.max), 1)} / ${fmt(m((r) => r.writer.idle.max), 1)} ms`, `${fmt(m((r) => ratio(r.writer.backup.max, r.writer.idle.max)), 2)}×`],
    ['event loop longest delay during backup (Fastify process)', `${fmt(m((r) => r.eventLoop.maxMs), 1)} ms (worst run ${fmt(Math.max(...backups.map((r) => r.eventLoop.maxMs)), 1)} ms)`, ''],
    ['event loop p99 delay during backup', `${fmt(m((r) => r.eventLoop.p99Ms), 1)} ms`, ''],
    ['event loop busy time during backup (code that ran on it)', `${fmt(m((r) => r.eventLoop.activeMs), 1)} ms`, ''],
    ['same process during the plain copy: longest delay / p99', `${fmt(median(copies.map((r) => r.eventLoop.maxMs)), 1)} / ${fmt(median(copies.map((r) => r.eventLoop.p99Ms)), 1)} ms`, ''],
    ['backup time / plain copy + fsync', `${fmt(m((r) => r.durationMs), 0)} / ${fmt(median(copies.map((r) => r.durationMs)), 0)} ms`, `${fmt(median(backups.map((r, i) => ratio(r.durationMs, copies[i].durationMs))), 2)}×`],
    ['copies correct (integrity, even pairs, nothing missing)', `${runs - failures}/${runs}`, failures ? 'FAIL' : 'ok']
  ]
  console.log(`Backup impact, ${SIZE_MB} MB WAL database, writer in another process, median of ${runs} runs (absolute times vary from machine to machine and run to run)\n`)
  console.log('| measure | value | ratio |\n|---|---|---|')
  for (const row of rows) console.log(`| ${row.join(' | ')} |`)
}

main().catch((err) => {
  console.error(err)
  killAll()
  process.exitCode = 1
})
