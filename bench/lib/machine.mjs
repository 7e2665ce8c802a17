// What the figures were measured on; absolute times only mean something next to this.
import os from 'node:os'
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import Database from 'better-sqlite3'
import { CACHE_DIR } from './paths.mjs'

const require = createRequire(import.meta.url)

function run (command, args) {
  try {
    return execFileSync(command, args, { encoding: 'utf8', timeout: 5000 }).trim()
  } catch {
    return 'unknown'
  }
}

export function describeMachine () {
  const db = new Database(':memory:')
  const sqlite = db.prepare('SELECT sqlite_version() AS v').get().v
  db.close()
  const source = run('df', ['--output=source', CACHE_DIR]).split('\n').pop()
  const device = source.replace(/^\/dev\//, '').replace(/\d+$/, '')
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    kernel: os.release(),
    disk: `${source} (${run('df', ['--output=fstype', CACHE_DIR]).split('\n').pop()}, rotational=${run('cat', [`/sys/block/${device}/queue/rotational`])})`,
    node: process.version,
    sqlite,
    betterSqlite3: require('better-sqlite3/package.json').version,
    fastify: require('fastify/package.json').version
  }
}

export function machineLine (m) {
  return `${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB RAM, disk ${m.disk}, Linux ${m.kernel}, Node ${m.node}, SQLite ${m.sqlite}, better-sqlite3 ${m.betterSqlite3}, Fastify ${m.fastify}`
}
