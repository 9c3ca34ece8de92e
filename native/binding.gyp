{
  "targets": [
    {
      "target_name": "lazylabel_dnnl",
      "sources": ["dnnl_conv.cc"],
      "libraries": ["-ldnnl", "-fopenmp"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fopenmp"]
    }
  ]
}
