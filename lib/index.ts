import { fastifySqliteBackup } from './plugin'
import * as errors from './errors'

// Exported the three ways Fastify plugins are: CommonJS, ESM default, and a named export.
module.exports = fastifySqliteBackup
module.exports.default = fastifySqliteBackup
module.exports.fastifySqliteBackup = fastifySqliteBackup
module.exports.errors = errors
