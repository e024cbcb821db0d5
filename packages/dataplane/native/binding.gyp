{
  "targets": [
    {
      "target_name": "cluevpn_dataplane",
      "sources": ["src/addon.c", "src/aead.c", "src/udp.c", "src/express.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      # tun-express.h, shared with the TUN addon: ../../tun/native from here,
      # ../../../tun/native from the sanitizer mirror in build-sanitize/.
      "include_dirs": ["../../tun/native", "../../../tun/native"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
