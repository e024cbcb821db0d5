{
  "targets": [
    {
      "target_name": "cluevpn_dataplane",
      "sources": ["src/addon.c", "src/aead.c", "src/udp.c", "src/express.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
