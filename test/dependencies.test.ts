import t from 'tap'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import Database from 'better-sqlite3'

// The AWS SDK and age encryption are optional peer dependencies: a user who backs up to a local directory neither
// installs nor loads them, and one who configures S3 without them is told exactly what to install.
const root = join(__dirname, '..')

/** Runs `source` in a fresh Node process; `hide` makes those packages unresolvable, as if not installed. */
function run (source: string, hide: string[] = []): string {
  const hider = `
    const Module = require('node:module')
    const resolve = Module._resolveFilename
    const hidden = ${JSON.stringify(hide)}
    Module._resolveFilename = function (request, ...rest) {
      if (hidden.some((name) => request === name || request.startsWith(name + '/'))) {
        const err = new Error("Cannot find module '" + request + "'")
        err.code = 'MODULE_NOT_FOUND'
        throw err
      }
      return resolve.call(this, request, ...rest)
    }
  `
  return execFileSync(process.execPath, ['-e', hider + source], { cwd: root, encoding: 'utf8' }).trim()
}

t.test('requiring the plugin and backing up to a directory loads no AWS SDK and no age', async (t) => {
  const dir = t.testdir()
  new Database(join(dir, 'app.db')).close()
  const out = run(`
    const Fastify = require('fastify')
    const backup = require('fastify-sqlite-backup')
    const app = Fastify()
    app.register(backup, { database: ${JSON.stringify(join(dir, 'app.db'))}, destination: ${JSON.stringify(join(dir, 'backups'))}, interval: false })
    app.ready()
      .then(() => app.backup.now())
      .then((result) => {
        const heavy = Object.keys(require.cache).filter((path) => /@aws-sdk|@smithy|age-encryption/.test(path))
        console.log(result.skipped, heavy.length)
        return app.close()
      })
  `, ['@aws-sdk/client-s3', '@aws-sdk/lib-storage', 'age-encryption'])
  t.equal(out, 'false 0', 'a backup is published with the optional packages absent, and none of them is loaded')
})

t.test('an S3 destination without the AWS SDK installed fails registration with a coded error naming the packages', async (t) => {
  const dir = t.testdir()
  new Database(join(dir, 'app.db')).close()
  const out = run(`
    const Fastify = require('fastify')
    const backup = require('fastify-sqlite-backup')
    const app = Fastify()
    app.register(backup, { database: ${JSON.stringify(join(dir, 'app.db'))}, destination: { type: 's3', bucket: 'backups', region: 'us-east-1', endpoint: 'http://127.0.0.1:9' } })
    app.ready().catch((err) => console.log(err.code + ' | ' + err.message))
  `, ['@aws-sdk/client-s3'])
  const [code, message] = out.split(' | ')
  t.equal(code, 'FST_SQLITE_BACKUP_MISSING_DEPENDENCY')
  t.match(message, /npm install @aws-sdk\/client-s3 @aws-sdk\/lib-storage/, 'says what to install')
  t.match(message, /@aws-sdk\/client-s3 is missing/, 'names the missing package')
})

t.test('the command-line tool lists a local directory without the AWS SDK, and names it for an s3:// URL', async (t) => {
  const dir = t.testdir({ backups: {} })
  // stdout and stderr both on stdout, in order, so that one string shows what the user saw.
  const cli = (args: string[]): string => run(`
    const io = { stdout: process.stdout, stderr: { write: (text) => process.stdout.write('stderr: ' + text) } }
    require('./dist/cli/main.js').main(${JSON.stringify(args)}, io).then((code) => console.log('exit ' + code))
  `, ['@aws-sdk/client-s3', '@aws-sdk/lib-storage'])
  t.match(cli(['list', join(dir, 'backups')]), /^no backups in .*\nexit 0$/, 'a local directory works')
  const s3 = cli(['list', 's3://backups/app'])
  t.match(s3, /^stderr: .*FST_SQLITE_BACKUP_MISSING_DEPENDENCY/, 'a coded error on stderr')
  t.match(s3, /exit 1$/, 'exit code 1')
})
