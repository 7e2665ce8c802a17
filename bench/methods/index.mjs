import * as original from './original.mjs'
import * as copy from './copy.mjs'
import * as plugin from './plugin.mjs'

export const methods = { original, copy, plugin }
