// How long the latest state takes to restore with continuous backup, against the floor of any restore: a plain copy
// of the result. A WAL database of --base-mb (built once, cached in bench/.cache/), the plugin in continuous mode on
// a local destination, its base snapshot, then --changes-mb of new page data (random rows updated with random blobs,
// --rows-per-tx rows a transaction), sync(), the app closed. Then, timed:
//   node dist/cli/main.js restore <destination> --to <out>      (the base copied, every change replayed, checked)
//   cp <out> <copy> + fsync                                      (the plain copy of the result)
// and the restored file is checked: integrity_check, and a sha256 over every row of every table equal to the live
// database's.
//   node bench/continuous/restore-time.mjs [--base-mb 1024] [--changes-mb 100] [--quick] [--rows-per-tx 100] [--spread 0] [--keep]
// --quick is --base-mb 100 --changes-mb 10; --spread N spreads the changes over N seconds (about N segments) instead
// of committing them as fast as they go.
import { mkdirSync, mkdtempSync, writeFileSync, statSync, existsSync, rmSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { describeMachine, machineLine } from '../lib/machine.mjs'
import { ensureDatabase } from '../lib/database.mjs'
import { fmt } from '../lib/goals.mjs'
import { forkChild, nextMessage, exited, runCommand, scratchDir, shutdown } from './lib/procs.mjs'
import { CACHE_DIR, CONTINUOUS_CACHE, PROJECT_DIR } from './lib/paths.mjs'
import { prepare as preparePlugin } from './lib/plugin.mjs'
import { copyDatabase } from './lib/database-copy.mjs'
import { listDestination, totals } from './lib/destination-files.mjs'
import { contentOf } from './lib/content.mjs'
import { wasInterrupted } from './lib/interrupted.mjs'

const USAGE = 'usage: node bench/continuous/restore-time.mjs [--base-mb 1024] [--changes-mb 100] [--quick] [--rows-per-tx 100] [--spread 0] [--keep]'
let args
try {
  args = parseArgs({
    options: {
      'base-mb': { type: 'string' },
      'changes-mb': { type: 'string' },
      quick: { type: 'boolean', default: false },
      'rows-per-tx': { type: 'string', default: '100' },
      spread: { type: 'string', default: '0' },
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
const baseMb = Number(args['base-mb'] ?? (args.quick ? 100 : 1024))
const changesMb = Number(args['changes-mb'] ?? (args.quick ? 10 : 100))
const rowsPerTx = Number(args['rows-per-tx'])
const spreadSeconds = Number(args.spread)
if (!Number.isInteger(baseMb) || baseMb < 1 || !(changesMb > 0) || !Number.isInteger(rowsPerTx) || rowsPerTx < 1 || !(spreadSeconds >= 0)) {
  console.error(USAGE)
  process.exit(2)
}

const APP = fileURLToPath(new URL('./child/restore-app.mjs', import.meta.url))
const CLI = join(PROJECT_DIR, 'dist', 'cli', 'main.js')
const MiB = 1024 * 1024
const APP_LIMIT_MS = 60 * 60_000
const RESTORE_LIMIT_MS = 60 * 60_000
const log = (message) => console.error(`[restore-time] ${message}`)

function since (started) {
  return performance.now() - started
}

async function fsyncFile (path) {
  const handle = await open(path, 'r+')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

function mib (bytes) {
  return `${fmt(bytes / MiB, 1)} MiB`
}

function seconds (ms) {
  return `${fmt(ms / 1000, 2)} s`
}

async function main () {
  const startedAt = new Date()
  mkdirSync(CACHE_DIR, { recursive: true })
  const machine = describeMachine()
  log(machineLine(machine))
  const plugin = await preparePlugin()
  log(`plugin: dist/ built at ${plugin.builtAt}`)
  const cached = ensureDatabase(baseMb, 'wal', log)

  mkdirSync(CONTINUOUS_CACHE, { recursive: true })
  const runDir = mkdtempSync(join(CONTINUOUS_CACHE, 'restore-time-'))
  const scratch = scratchDir(runDir)
  const liveDir = join(runDir, 'live')
  const destination = join(runDir, 'destination')
  const restoreDir = join(runDir, 'restore')
  // The CLI downloads (decompresses) segments into os.tmpdir(): pointed into the run's directory, so that they go
  // with it even when the CLI is killed.
  const tmpDir = join(runDir, 'tmp')
  const cliEnv = { ...process.env, TMPDIR: tmpDir }
  for (const dir of [liveDir, destination, restoreDir, tmpDir]) mkdirSync(dir)
  const dbPath = join(liveDir, 'app.db')
  const out = join(restoreDir, 'restored.db')
  const plain = join(restoreDir, 'plain-copy.db')
  const results = { startedAt: startedAt.toISOString(), machine, plugin, args: { baseMb, changesMb, rowsPerTx, spreadSeconds }, dir: runDir }
  let failed = false
  try {
    log(`copying the cached ${baseMb} MB database`)
    copyDatabase(cached, dbPath)
    results.baseBytes = statSync(dbPath).size

    log(`app: base snapshot, then ${changesMb} MiB of page data in transactions of ${rowsPerTx} rows`)
    const app = forkChild(APP, [JSON.stringify({ dbPath, destination, changesBytes: Math.round(changesMb * MiB), rowsPerTx, spreadSeconds })], join(runDir, 'app.log'))
    app.on('message', (message) => { if (message?.type === 'progress') log(`  ${message.message}`) })
    results.app = await nextMessage(app, 'done', APP_LIMIT_MS)
    await exited(app)
    delete results.app.type
    results.liveBytes = statSync(dbPath).size
    results.destination = totals(destination, listDestination(destination))
    log(`  ${results.app.transactions} transactions, ${results.app.rows} rows, ${mib(results.app.pageBytes)} of page data; ` +
      `${results.destination.segments.files} segments (${mib(results.destination.segments.bytes)} gzipped)`)

    log('reading the live database (sha256 of every row)')
    results.live = contentOf(dbPath)

    log(`timing: ${CLI} restore ${destination} --to ${out}`)
    let started = performance.now()
    const restored = await runCommand(process.execPath, [CLI, 'restore', destination, '--to', out, '--json'], { cwd: PROJECT_DIR, env: cliEnv, timeout: RESTORE_LIMIT_MS })
    results.restoreMs = since(started)
    results.restoreReport = JSON.parse(restored.stdout)
    results.restoredBytes = statSync(out).size

    // The same restore without the changes: the base snapshot alone (by its id), to see what replaying them costs.
    const baseOut = join(restoreDir, 'base-only.db')
    log(`timing: ${CLI} restore ${destination} ${results.restoreReport.id} --to ${baseOut} (the base alone)`)
    started = performance.now()
    await runCommand(process.execPath, [CLI, 'restore', destination, results.restoreReport.id, '--to', baseOut, '--json'], { cwd: PROJECT_DIR, env: cliEnv, timeout: RESTORE_LIMIT_MS })
    results.baseOnlyRestoreMs = since(started)
    rmSync(baseOut, { force: true })

    log('timing: cp + fsync of the restored file')
    started = performance.now()
    await runCommand('cp', ['--', out, plain], { timeout: RESTORE_LIMIT_MS })
    await fsyncFile(plain)
    results.copyMs = since(started)
    rmSync(plain, { force: true })
    results.ratio = results.restoreMs / results.copyMs

    log('checking the restored database (integrity_check, sha256 of every row)')
    results.restored = contentOf(out, { integrity: true })
    for (const suffix of ['-wal', '-shm', '-journal']) if (existsSync(out + suffix)) rmSync(out + suffix, { force: true })
    results.equal = results.restored.sha256 === results.live.sha256
    failed = results.restored.integrity !== 'ok' || !results.equal
  } catch (err) {
    failed = true
    results.error = (err.stderr || err.message).trim()
    if (!wasInterrupted()) log(`FAILED: ${results.error.split('\n').slice(-3).join(' | ')}`)
  } finally {
    if ((failed && !wasInterrupted()) || args.keep) {
      scratch.keep()
      log(`kept ${runDir}${failed ? ' for a look' : ''}`)
    } else {
      scratch.remove()
    }
  }

  // Stopped by a signal: procs.mjs is killing the children and exits; there is nothing to report.
  if (wasInterrupted()) return
  results.finishedAt = new Date().toISOString()
  const table = report(results)
  results.table = table
  console.log('\n' + table + '\n')
  const file = join(CACHE_DIR, `continuous-restore-time-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n')
  log(`results written to ${file} (${((Date.now() - startedAt) / 1000).toFixed(0)} s)`)
  if (failed) process.exitCode = 1
}

function report (r) {
  const a = r.app ?? {}
  const d = r.destination
  const replayed = r.restoreReport?.replayed
  const lines = [
    `Measured on: ${machineLine(r.machine)}; dist/ built ${r.plugin.builtAt}.`,
    '',
    `Restore of the latest state (CLI, a fresh process) vs a plain copy of its result (cp + fsync), base ${r.baseBytes ? mib(r.baseBytes) : 'n/a'}; ` +
      'both read files written moments before, so from the page cache alike:',
    '',
    '| base | changes (page data in the WAL) | transactions / rows | segments stored | restore (CLI) | cp + fsync of the result | restore ÷ copy | integrity_check | rows equal to the live db |',
    '|---|---|---|---|---|---|---|---|---|',
    '| ' + [
      r.baseBytes ? mib(r.baseBytes) : 'n/a',
      a.pageBytes === undefined ? 'n/a' : `${mib(a.pageBytes)} (${a.frames} frames)`,
      a.transactions === undefined ? 'n/a' : `${a.transactions} / ${a.rows}`,
      d ? `${d.segments.files} files, ${mib(d.segments.bytes)}` : 'n/a',
      r.restoreMs === undefined ? 'n/a' : seconds(r.restoreMs),
      r.copyMs === undefined ? 'n/a' : seconds(r.copyMs),
      r.ratio === undefined ? 'n/a' : `${fmt(r.ratio, 2)}×`,
      r.restored?.integrity ?? 'n/a',
      r.equal === undefined ? 'n/a' : r.equal ? `yes (sha256 ${r.live.sha256.slice(0, 12)}…, ${Object.entries(r.live.tables).map(([t, n]) => `${t} ${n}`).join(', ')})` : '**NO**'
    ].join(' | ') + ' |',
    '',
    '| base snapshot (in the app) | changes committed in | sync() | app close | WAL restarts | restored file | commits replayed | CLI\'s own durationMs | restore of the base alone (no replay) | restored journal mode |',
    '|---|---|---|---|---|---|---|---|---|---|',
    '| ' + [
      a.baseMs === undefined ? 'n/a' : seconds(a.baseMs),
      a.changeMs === undefined ? 'n/a' : seconds(a.changeMs),
      a.syncMs === undefined ? 'n/a' : `${fmt(a.syncMs, 0)} ms`,
      a.closeMs === undefined ? 'n/a' : `${fmt(a.closeMs, 0)} ms`,
      a.walRestarts ?? 'n/a',
      r.restoredBytes === undefined ? 'n/a' : `${mib(r.restoredBytes)} (live ${mib(r.liveBytes)})`,
      replayed ? String(replayed.commits) : 'n/a',
      r.restoreReport ? `${r.restoreReport.durationMs} ms` : 'n/a',
      r.baseOnlyRestoreMs === undefined ? 'n/a' : seconds(r.baseOnlyRestoreMs),
      r.restored?.journalMode ?? 'n/a'
    ].join(' | ') + ' |'
  ]
  if (r.error) lines.push('', `FAILED: ${r.error.split('\n').slice(-3).join(' | ')}`)
  if (r.restored && r.restored.integrity !== 'ok') lines.push('', `RESTORED DATABASE FAILS integrity_check: ${r.restored.integrity}`)
  if (r.equal === false) lines.push('', `RESTORED DATABASE DIFFERS from the live one: live ${JSON.stringify(r.live.tables)} ${r.live.sha256}, restored ${JSON.stringify(r.restored.tables)} ${r.restored.sha256}`)
  return lines.join('\n')
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
}).finally(shutdown)
