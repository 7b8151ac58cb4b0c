# The native engine: the C core (wasm/*.c, one native/unit_*.c each) plus the Node-API binding, built by
# native/build.mjs (npm's "install" script) with `node-gyp rebuild --directory=native`. It lives here, not
# at the package root, so that npm never runs node-gyp on its own (a root binding.gyp makes npm run
# `node-gyp rebuild` when there is no install script, and fail the install when it fails).
{
  'targets': [
    {
      'target_name': 'svcplane',
      'sources': ['binding.c', 'unit_core.c', 'unit_ingress.c', 'unit_packet.c'],
      # -O3 and no -march: the build must run on any CPU of the architecture it was built for.
      'cflags': ['-std=c11', '-O3', '-fvisibility=hidden', '-fno-strict-aliasing', '-Wall', '-Wextra', '-Wno-unused-parameter'],
      'cflags!': ['-O0', '-O1', '-O2'],
      'defines': ['NB_CFLAGS="-std=c11 -O3 -fvisibility=hidden -fno-strict-aliasing"'],
      'xcode_settings': {
        'GCC_OPTIMIZATION_LEVEL': '3',
        'GCC_C_LANGUAGE_STANDARD': 'c11',
        'GCC_SYMBOLS_PRIVATE_EXTERN': 'YES',
        'OTHER_CFLAGS': ['-fno-strict-aliasing'],
      },
    },
  ],
}
