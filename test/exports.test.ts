import t from 'tap'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'

// Each import form as a user's own process would load it, resolved through package.json like any dependency.
const root = join(__dirname, '..')

function run (type: 'commonjs' | 'module', source: string): string {
  return execFileSync(process.execPath, [`--input-type=${type}`, '-e', source], { cwd: root, encoding: 'utf8' }).trim()
}

t.test('CommonJS require', async (t) => {
  const out = run('commonjs', `
    const backup = require('fastify-sqlite-backup')
    const { fastifySqliteBackup, errors } = require('fastify-sqlite-backup')
    console.log(typeof backup, backup === fastifySqliteBackup, backup.default === backup, typeof errors.FST_SQLITE_BACKUP_CLOSED)
  `)
  t.equal(out, 'function true true function')
})

t.test('ESM default and named imports', async (t) => {
  const out = run('module', `
    import backup, { fastifySqliteBackup, errors } from 'fastify-sqlite-backup'
    console.log(typeof backup, backup === fastifySqliteBackup, new errors.FST_SQLITE_BACKUP_CLOSED().code)
  `)
  t.equal(out, 'function true FST_SQLITE_BACKUP_CLOSED')
})

t.test('the plugin carries its name and Fastify range for fastify-plugin', async (t) => {
  const out = run('commonjs', `
    const backup = require('fastify-sqlite-backup')
    console.log(backup[Symbol.for('fastify.display-name')], backup[Symbol.for('plugin-meta')].fastify)
  `)
  t.equal(out, 'fastify-sqlite-backup 5.x')
})

t.test('an error is an instance of its exported class', async (t) => {
  const out = run('commonjs', `
    const Fastify = require('fastify')
    const backup = require('fastify-sqlite-backup')
    const app = Fastify()
    app.register(backup, { database: 42, destination: 'x' })
    app.ready().catch((err) => console.log(err instanceof backup.errors.FST_SQLITE_BACKUP_INVALID_OPTION, err.code))
  `)
  t.equal(out, 'true FST_SQLITE_BACKUP_INVALID_OPTION')
})
