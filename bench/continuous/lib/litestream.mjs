// Litestream v0.3.13, from the npm package @flydotio/litestream-linux-x64@1.0.1, installed on first use into
// bench/.cache/litestream (never into the project's package.json). Replicates to one file replica.
import { mkdirSync, writeFileSync, statSync } from 'node:fs'
import { join, basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { forkChild, spawnChild, nextMessage, runCommand } from './procs.mjs'
import { filesUnder, waitForFile } from './files.mjs'
import { CACHE_DIR } from './paths.mjs'

const PACKAGE = '@flydotio/litestream-linux-x64'
const PACKAGE_VERSION = '1.0.1'
const EXPECTED_VERSION = 'v0.3.13'
const INSTALL_DIR = join(CACHE_DIR, 'litestream')
const WRITER = fileURLToPath(new URL('../child/writer.mjs', import.meta.url))
const SNAPSHOT_LIMIT_MS = 20_000

export const name = 'litestream'
let binary = null

function findBinary (packageDir) {
  // The package is the binary plus a package.json; found by name and mode rather than by a fixed path.
  return filesUnder(packageDir).find((path) => basename(path) === 'litestream' && (statSync(path).mode & 0o111) !== 0)
}

/** Installs the package when its binary is missing, finds the binary and asks it its version. */
export async function prepare (log) {
  const packageDir = join(INSTALL_DIR, 'node_modules', ...PACKAGE.split('/'))
  binary = findBinary(packageDir)
  if (!binary) {
    log(`installing ${PACKAGE}@${PACKAGE_VERSION} into ${INSTALL_DIR} (first use)`)
    mkdirSync(INSTALL_DIR, { recursive: true })
    await runCommand('npm', ['install', '--prefix', INSTALL_DIR, '--no-audit', '--no-fund', '--no-package-lock', `${PACKAGE}@${PACKAGE_VERSION}`],
      { cwd: INSTALL_DIR, timeout: 5 * 60_000 })
    binary = findBinary(packageDir)
    if (!binary) throw new Error(`no executable "litestream" in ${packageDir} after npm install`)
  }
  const version = (await runCommand(binary, ['version'], { timeout: 10_000 })).stdout.trim()
  if (version !== EXPECTED_VERSION) log(`WARNING: litestream says ${version}, expected ${EXPECTED_VERSION}`)
  return { binary, version, package: `${PACKAGE}@${PACKAGE_VERSION}` }
}

/**
 * The v0.3 config: `dbs[].replicas[]` (a list; v0.5 has a single `replica`), the sync interval set per replica.
 * The DB-level monitor-interval (how often the WAL is copied to Litestream's shadow WAL) keeps its default of 1s.
 */
function config (dbPath, replicaDir) {
  return [
    'dbs:',
    `  - path: ${JSON.stringify(dbPath)}`,
    '    replicas:',
    '      - type: file',
    `        path: ${JSON.stringify(replicaDir)}`,
    '        sync-interval: 1s',
    ''
  ].join('\n')
}

/** Starts the writer, then litestream beside it; the writer is listed first so that it is killed first. */
export async function start ({ dbPath, machineDir, destinationDir, rate, checkpointEveryMs, processes, logs }) {
  const configPath = join(machineDir, 'litestream.yml')
  writeFileSync(configPath, config(dbPath, destinationDir))
  const writerLog = join(machineDir, 'writer.log')
  const toolLog = join(machineDir, 'litestream.log')
  logs.push(writerLog, toolLog)
  const writer = forkChild(WRITER, [dbPath, String(rate), String(checkpointEveryMs)], writerLog)
  processes.push({ name: 'writer', child: writer })
  const ready = await nextMessage(writer, 'ready', 30_000)
  processes.push({ name: 'litestream', child: spawnChild(binary, ['replicate', '-config', configPath], toolLog) })
  return {
    writer,
    synchronous: ready.synchronous,
    // A snapshot is published under generations/<id>/snapshots/<index>.snapshot.lz4 (written as .tmp, then renamed).
    waitForSnapshot: () => waitForFile(destinationDir, (path) => path.endsWith('.snapshot.lz4'),
      { ms: SNAPSHOT_LIMIT_MS, processes, what: 'a litestream snapshot' })
  }
}

/** Restores from the replica alone (its URL: no config, nothing from the machine), to `out`. */
export async function restore ({ destinationDir, out }) {
  return runCommand(binary, ['restore', '-o', out, `file://${destinationDir}`], { timeout: 60_000 })
}
