import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import type { BackupResult, BackupStatus } from 'fastify-sqlite-backup'
import { integrityCheck } from './helpers'

const root = resolve(__dirname, '..')
const LISTEN_TIMEOUT_MS = 20_000
const EXIT_TIMEOUT_MS = 15_000

/** One row of the example's JSON log (pino). */
interface LogLine {
  level: number
  msg: string
  [key: string]: unknown
}

/** Rejects after `ms`, so that a hung child fails the test instead of stalling it. */
async function within<T> (ms: number, what: string, promise: Promise<T>): Promise<T> {
  const ac = new AbortController()
  const timeout = sleep(ms, undefined, { signal: ac.signal }).then(() => { throw new Error(`${what} took longer than ${ms} ms`) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    ac.abort()
    timeout.catch(() => {})
  }
}

t.test('npm start: the example app serves, backs up on demand and shuts down cleanly', async (t) => {
  const dataDir = t.testdir()
  const backups = join(dataDir, 'backups')
  const child = spawn(process.execPath, [join(root, 'example', 'server.mjs')], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  exited.catch(() => {})

  const logs: LogLine[] = []
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const listening = new Promise<string>((resolve, reject) => {
    let pending = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk
      const lines = pending.split('\n')
      pending = lines.pop()!
      for (const line of lines) {
        let entry: LogLine
        try {
          entry = JSON.parse(line) as LogLine
        } catch {
          reject(new Error(`the example wrote a line that is not JSON: ${line}`))
          continue
        }
        logs.push(entry)
        const address = /^Server listening at (http:\/\/\S+)$/.exec(entry.msg)
        if (address) resolve(address[1])
      }
    })
    child.once('exit', (code) => reject(new Error(`the example exited with code ${code} before listening:\n${stderr}`)))
  })
  const base = await within(LISTEN_TIMEOUT_MS, 'starting the example', listening)

  // runOnStart: the first backup is taken right after start. Wait for it, so that the post below is newer than it.
  const firstBackup = (async () => {
    for (;;) {
      const status = await (await fetch(`${base}/backup/status`)).json() as { published: number, running: boolean }
      if (status.published >= 1 && !status.running) return
      await sleep(50)
    }
  })()
  await within(LISTEN_TIMEOUT_MS, 'the backup taken at start', firstBackup)

  // A post committed before the backup call must be in the backup it returns.
  const created = await fetch(`${base}/posts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'committed before the backup' })
  })
  t.equal(created.status, 201)
  const { id: postId } = await created.json() as { id: number }

  const response = await fetch(`${base}/backup`, { method: 'POST' })
  t.equal(response.status, 200)
  const result = await response.json() as BackupResult
  t.equal(result.skipped, false, 'a commit since the newest backup means a new backup')
  t.equal(result.path, join(backups, `${result.id}.sqlite`))
  t.ok(existsSync(result.path), 'the backup file exists')
  t.ok(existsSync(join(backups, `${result.id}.json`)), 'its metadata exists')
  t.equal(result.metadata.id, result.id)
  t.equal(result.metadata.journalMode, 'wal')
  t.equal(integrityCheck(result.path), 'ok')
  const copy = new Database(result.path, { readonly: true, fileMustExist: true })
  try {
    const post = copy.prepare('SELECT title FROM posts WHERE id = ?').get(postId) as { title: string } | undefined
    t.same(post, { title: 'committed before the backup' }, 'the backup holds the post committed before the call')
  } finally {
    copy.close()
  }

  const forced = await (await fetch(`${base}/backup?force=true`, { method: 'POST' })).json() as BackupResult
  t.equal(forced.skipped, false, 'force publishes a new backup')
  t.not(forced.id, result.id)
  t.ok(existsSync(forced.path))

  const statusResponse = await fetch(`${base}/backup/status`)
  t.equal(statusResponse.status, 200)
  const status = await statusResponse.json() as Record<keyof BackupStatus, unknown> & { lastBackup: { id: string } | null }
  t.type(status.running, 'boolean')
  t.ok(status.lastBackup !== null && status.lastBackup.id >= forced.id, 'lastBackup is the newest backup')
  t.ok((status.published as number) >= 3, 'the backup at start, the one on demand and the forced one')
  t.equal(status.failed, 0)
  t.equal(status.lastError, null)
  t.type(status.nextRunAt, 'string', 'the schedule is armed')

  child.kill('SIGTERM')
  const [code, signal] = await within(EXIT_TIMEOUT_MS, 'shutting down', exited)
  t.equal(signal, null, 'not killed by the signal')
  t.equal(code, 0, `clean exit; stderr: ${stderr}`)

  const files = readdirSync(backups)
  t.same(files.filter((name) => name.startsWith('.tmp-')), [], 'no temp file is left behind')
  for (const name of files.filter((name) => name.endsWith('.sqlite'))) {
    t.ok(files.includes(name.replace(/\.sqlite$/, '.json')), `${name} has its metadata`)
  }
  t.notOk(existsSync(join(dataDir, 'app.db-wal')), 'every connection to the database was closed (the last one removes the -wal file)')
  t.ok(logs.some((entry) => entry.msg === 'sqlite backup published'), 'backups are logged')
  t.same(logs.filter((entry) => entry.level >= 50), [], 'nothing was logged at error level')
})
