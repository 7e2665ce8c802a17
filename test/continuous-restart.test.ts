import t from 'tap'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { buildApp, integrityCheck, delay, loggedRows } from './helpers'

// An app killed with SIGKILL and started again: what it had not shipped is still in the WAL, and the next start
// ships it on the same chain, so the history across the restart has no hole.
const APP = join(__dirname, 'fixtures', 'continuous-app.js')

t.test('after a SIGKILL, the next start carries the chain on and ships what the dead process had not', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const setup = new Database(path)
  setup.pragma('journal_mode = WAL')
  setup.exec('CREATE TABLE log (n INTEGER PRIMARY KEY, at INTEGER NOT NULL)')
  setup.close()

  // The app writes about 200 rows a second and ships every second on its own.
  const child = fork(APP, [path, destination, 'timer'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [] })
  t.teardown(() => { child.kill('SIGKILL') })
  await once(child, 'message')
  await delay(1500 + Math.random() * 1000)
  child.kill('SIGKILL')
  await once(child, 'exit')
  const committed = loggedRows(path)
  t.ok(committed.length > 0, `${committed.length} rows committed before the kill`)

  const app = await buildApp(t, { database: path, destination, continuous: true, interval: false })
  const db = new Database(path)
  t.teardown(() => db.close())
  const last = committed.at(-1)!
  db.prepare('INSERT INTO log (n, at) VALUES (?, ?)').run(last + 1, Date.now())
  await app.backup.sync()

  t.equal(readdirSync(join(destination, 'wal')).length, 1, 'one chain: the restart carried it on')
  const restored = await app.backup.restore('latest', { to: join(dir, 'restored.db') })
  t.same(loggedRows(restored.path), [...committed, last + 1], 'every row, those the dead process had not shipped included')
  t.equal(integrityCheck(restored.path), 'ok')
})
