import t from 'tap'
import Fastify from 'fastify'
import { cpSync, copyFileSync, existsSync } from 'node:fs'
import { join, dirname } from 'node:path'
import Database from 'better-sqlite3'
import backup from 'fastify-sqlite-backup'
import { createDatabase, count } from './helpers'

// A second copy of better-sqlite3 is a second copy of SQLite in the process: POSIX locks belong to the process and
// the two copies keep separate track of them, so the plugin's connections could roll back the app's live journal or
// drop its locks when they close. Such a connection is refused, with a message that says why and what to do.
t.test('a connection from another copy of better-sqlite3 is refused at registration, and nothing is opened or created', async (t) => {
  const dir = t.testdir()
  // A real second copy: the package's JavaScript and its native addon under another path, loaded beside ours.
  const original = dirname(require.resolve('better-sqlite3/package.json'))
  const copy = join(dir, 'copy', 'better-sqlite3')
  cpSync(join(original, 'lib'), join(copy, 'lib'), { recursive: true })
  copyFileSync(join(original, 'package.json'), join(copy, 'package.json'))
  copyFileSync(join(original, 'build', 'Release', 'better_sqlite3.node'), join(copy, 'better_sqlite3.node'))
  const OtherDatabase = require(join(copy, 'lib', 'index.js')) as typeof Database
  t.not(OtherDatabase, Database, 'a distinct copy')

  const path = join(dir, 'app.db')
  createDatabase(path).close()
  const db = new OtherDatabase(path, { nativeBinding: join(copy, 'better_sqlite3.node') })
  t.teardown(() => db.close())
  db.prepare('INSERT INTO pairs (n) VALUES (1)').run()

  const app = Fastify()
  t.teardown(() => app.close())
  app.register(backup, { database: db, destination: join(dir, 'backups') })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_SQLITE_BACKUP_INVALID_DATABASE', message: /another copy of better-sqlite3[\s\S]*npm ls better-sqlite3/ })
  t.equal(existsSync(join(dir, 'backups')), false, 'no destination created')
  t.equal(count(path, 'pairs'), 1, 'the database is untouched and still readable')
  t.same(db.prepare('SELECT count(*) AS n FROM pairs').get(), { n: 1 }, 'the app\'s connection still works')
})
