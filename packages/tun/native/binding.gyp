{
  "targets": [
    {
      "target_name": "tun",
      "sources": ["tun.c", "offload.c", "netlink.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
