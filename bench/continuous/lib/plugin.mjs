// This project's plugin in continuous mode: the Fastify app registers it and writes; the plugin ships the
// committed WAL changes every second. Restored with the project's CLI, which restores the latest state (newest
// snapshot plus every shipped change).
import { existsSync, statSync } from 'node:fs'
import { join, basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { forkChild, nextMessage, runCommand } from './procs.mjs'
import { waitForFile } from './files.mjs'
import { PROJECT_DIR } from './paths.mjs'

const APP = fileURLToPath(new URL('../child/app.mjs', import.meta.url))
const CLI = join(PROJECT_DIR, 'dist', 'cli', 'main.js')
const SNAPSHOT_LIMIT_MS = 20_000
// A published snapshot: a name that does not start with '.' (temp files are .tmp-…) and ends in .sqlite.
const SNAPSHOT = /^[^.].*\.sqlite$/

export const name = 'plugin'

export async function prepare () {
  const entry = join(PROJECT_DIR, 'dist', 'index.js')
  if (!existsSync(entry) || !existsSync(CLI)) throw new Error('dist/ is missing: run npm run build first')
  // Which build was measured: dist/ is rebuilt by others while they work.
  return { builtAt: statSync(entry).mtime.toISOString(), cli: CLI }
}

export async function start ({ dbPath, machineDir, destinationDir, rate, checkpointEveryMs, processes, logs }) {
  const log = join(machineDir, 'app.log')
  logs.push(log)
  const app = forkChild(APP, [dbPath, destinationDir, String(rate), String(checkpointEveryMs)], log)
  processes.push({ name: 'app', child: app })
  const ready = await nextMessage(app, 'ready', 30_000)
  return {
    writer: app,
    synchronous: ready.synchronous,
    options: ready.options,
    waitForSnapshot: () => waitForFile(destinationDir, (path) => SNAPSHOT.test(basename(path)),
      { ms: SNAPSHOT_LIMIT_MS, processes, what: 'a plugin snapshot (*.sqlite)' })
  }
}

export async function restore ({ destinationDir, out }) {
  return runCommand(process.execPath, [CLI, 'restore', destinationDir, '--to', out], { cwd: PROJECT_DIR, timeout: 60_000 })
}
