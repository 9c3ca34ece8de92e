// Convolutions and max pooling for tfjs' wasm backend run by oneDNN (the library PyTorch's CPU
// convolutions use), plus strided row copies (Concat/SplitV), on tensors that stay where they are: in
// the wasm heap, channels last, filters as tfjs lays them out; and the bias gradients' row sums.
//
// JS calls conv(op, dims, heap, offsets, threads):
//   op      0 forward (optional bias, optional ReLU), 1 backward data, 2 backward weights,
//           3 max pooling, 4 max-pooling gradient (window = filter dims, ci = co, dilations 1)
//   dims    Int32Array [rank, n, ci, co, id, ih, iw, od, oh, ow, kd, kh, kw, sd, sh, sw,
//                       dd, dh, dw, pfront, ptop, pleft, pback, pbottom, pright, hasBias, relu]
//           (2D: rank 2 and every depth entry 1/0; dilations as tfjs counts them, 1 = none)
//   heap    the wasm memory's ArrayBuffer
//   offsets byte offsets into heap: op 0 [x, filter, bias or -1, y], op 1 [dy, filter, dx],
//           op 2 [x, dy, dfilter], op 3 [x, y], op 4 [x, dy, dx]
//   threads OpenMP threads for this call (1 inside the data-parallel trainer pool)
// Primitives are built once per shape and thread (the cache is thread_local: each Node worker thread
// has its own), with weights in whatever layout oneDNN prefers; tfjs' [kd,]kh,kw,ci,co filters are
// reordered into it per call, which is cheap next to the convolution.
#include <node_api.h>
#include <omp.h>

#include <dnnl.hpp>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

constexpr int kDims = 27;

struct Shape {
  int rank, n, ci, co, id, ih, iw, od, oh, ow, kd, kh, kw, sd, sh, sw, dd, dh, dw, pf, pt, pl, pbk, pb, pr, bias, relu;
};

struct Entry {
  primitive conv;
  memory::desc src, dst, bias, userWeights, weights;  // for op 1 src/dst are diff_src/diff_dst
  bool reorderWeights = false;
  primitive weightsReorder;  // user -> prim (ops 0, 1) or prim -> user (op 2)
  std::vector<float> weightsScratch;
  // op 4: the forward pooling that records the argmax (workspace) the backward pass routes dy by.
  primitive poolForward;
  memory::desc workspace;
  std::vector<uint8_t> workspaceData;
  std::vector<float> pooledScratch;
};

struct ThreadState {
  engine eng{engine::kind::cpu, 0};
  stream strm{eng};
  std::unordered_map<std::string, Entry> cache;
};

ThreadState& state() {
  thread_local ThreadState s;
  return s;
}

memory::dims spatial(const Shape& s, int d, int h, int w) {
  return s.rank == 3 ? memory::dims{d, h, w} : memory::dims{h, w};
}

Entry build(int op, const Shape& s) {
  ThreadState& st = state();
  const bool r3 = s.rank == 3;
  memory::dims src{s.n, s.ci}, dst{s.n, s.co}, wei{s.co, s.ci};
  for (auto v : spatial(s, s.id, s.ih, s.iw)) src.push_back(v);
  for (auto v : spatial(s, s.od, s.oh, s.ow)) dst.push_back(v);
  for (auto v : spatial(s, s.kd, s.kh, s.kw)) wei.push_back(v);
  const memory::dims strides = spatial(s, s.sd, s.sh, s.sw);
  const memory::dims dil = spatial(s, s.dd - 1, s.dh - 1, s.dw - 1);
  const memory::dims padL = spatial(s, s.pf, s.pt, s.pl);
  const memory::dims padR = spatial(s, s.pbk, s.pb, s.pr);
  const tag act = r3 ? tag::ndhwc : tag::nhwc;
  Entry e;
  e.src = memory::desc(src, dt::f32, act);
  e.dst = memory::desc(dst, dt::f32, act);
  e.userWeights = memory::desc(wei, dt::f32, r3 ? tag::dhwio : tag::hwio);
  const memory::desc anyWeights(wei, dt::f32, tag::any);
  const bool withBias = op == 0 && s.bias;
  e.bias = withBias ? memory::desc({s.co}, dt::f32, tag::x) : memory::desc();

  if (op >= 3) {
    // Max pooling: padded positions never win (oneDNN treats them as -inf), like TF's 'same' pooling;
    // the argmax is the first maximum of a window.
    const memory::dims window = spatial(s, s.kd, s.kh, s.kw);
    auto fwdDesc = pooling_forward::desc(op == 3 ? prop_kind::forward_inference : prop_kind::forward_training, algorithm::pooling_max,
                                         e.src, e.dst, strides, window, padL, padR);
    auto fwd = pooling_forward::primitive_desc(fwdDesc, st.eng);
    if (op == 3) {
      e.conv = pooling_forward(fwd);
      return e;
    }
    e.poolForward = pooling_forward(fwd);
    e.workspace = fwd.workspace_desc();
    e.workspaceData.resize(e.workspace.get_size() + 1);
    e.pooledScratch.resize(e.dst.get_size() / sizeof(float) + 1);
    auto bwdDesc = pooling_backward::desc(algorithm::pooling_max, e.src, e.dst, strides, window, padL, padR);
    e.conv = pooling_backward(pooling_backward::primitive_desc(bwdDesc, st.eng, fwd));
    return e;
  }

  primitive_attr attr;
  if (op == 0 && s.relu) {
    post_ops po;
    po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(po);
  }
  auto fwdDesc = convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, e.src, anyWeights,
                                           e.bias, e.dst, strides, dil, padL, padR);
  auto fwd = convolution_forward::primitive_desc(fwdDesc, op == 0 ? attr : primitive_attr(), st.eng);
  if (op == 0) {
    e.conv = convolution_forward(fwd);
    e.weights = fwd.weights_desc();
  } else if (op == 1) {
    auto d = convolution_backward_data::desc(algorithm::convolution_direct, e.src, anyWeights, e.dst, strides, dil, padL, padR);
    auto pd = convolution_backward_data::primitive_desc(d, st.eng, fwd);
    e.conv = convolution_backward_data(pd);
    e.weights = pd.weights_desc();
  } else {
    auto d = convolution_backward_weights::desc(algorithm::convolution_direct, e.src, anyWeights, e.dst, strides, dil, padL, padR);
    auto pd = convolution_backward_weights::primitive_desc(d, st.eng, fwd);
    e.conv = convolution_backward_weights(pd);
    e.weights = pd.diff_weights_desc();
  }
  e.reorderWeights = e.weights != e.userWeights;
  if (e.reorderWeights) {
    e.weightsScratch.resize(e.weights.get_size() / sizeof(float) + 1);
    e.weightsReorder = op == 2 ? reorder(reorder::primitive_desc(st.eng, e.weights, st.eng, e.userWeights))
                               : reorder(reorder::primitive_desc(st.eng, e.userWeights, st.eng, e.weights));
  }
  return e;
}

napi_value fail(napi_env env, const char* msg) {
  napi_throw_error(env, "ERR_LAZYLABEL_DNNL", msg);
  return nullptr;
}

// The call's first n arguments; false (a JS error thrown, naming the usage) when fewer came.
bool takeArgs(napi_env env, napi_callback_info info, size_t n, napi_value* argv, const char* usage) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) == napi_ok && argc >= n) return true;
  fail(env, usage);
  return false;
}

// The wasm heap's bytes; false (a JS error thrown) when v is not an ArrayBuffer.
bool takeHeap(napi_env env, napi_value v, char** data, size_t* bytes, const char* who) {
  void* d = nullptr;
  if (napi_get_arraybuffer_info(env, v, &d, bytes) == napi_ok) {
    *data = static_cast<char*>(d);
    return true;
  }
  fail(env, (std::string(who) + ": heap must be an ArrayBuffer").c_str());
  return false;
}

napi_value Conv(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!takeArgs(env, info, 5, argv, "conv(op, dims, heap, offsets, threads)")) return nullptr;
  int32_t op = 0, threads = 1;
  napi_get_value_int32(env, argv[0], &op);
  napi_get_value_int32(env, argv[4], &threads);
  napi_typedarray_type tt;
  size_t len = 0;
  void* dimsData = nullptr;
  if (napi_get_typedarray_info(env, argv[1], &tt, &len, &dimsData, nullptr, nullptr) != napi_ok || tt != napi_int32_array || len != kDims)
    return fail(env, "conv: dims must be an Int32Array of 27");
  char* heapData = nullptr;
  size_t heapBytes = 0;
  if (!takeHeap(env, argv[2], &heapData, &heapBytes, "conv")) return nullptr;
  double offs[4] = {-1, -1, -1, -1};
  uint32_t nOffs = 0;
  napi_get_array_length(env, argv[3], &nOffs);
  for (uint32_t i = 0; i < nOffs && i < 4; i++) {
    napi_value v;
    napi_get_element(env, argv[3], i, &v);
    napi_get_value_double(env, v, &offs[i]);
  }
  if (op < 0 || op > 4 || threads < 1) return fail(env, "conv: bad op or thread count");
  Shape s;
  static_assert(sizeof(Shape) == kDims * sizeof(int), "Shape layout");
  std::memcpy(&s, dimsData, sizeof(Shape));
  auto at = [&](double o) -> float* { return o < 0 ? nullptr : reinterpret_cast<float*>(heapData + static_cast<size_t>(o)); };
  try {
    // Before building: oneDNN sizes a primitive's work split for the thread count current at creation.
    omp_set_num_threads(threads);
    ThreadState& st = state();
    std::string key(reinterpret_cast<const char*>(dimsData), sizeof(Shape));
    key += static_cast<char>(op);
    key.append(reinterpret_cast<const char*>(&threads), sizeof threads);
    auto it = st.cache.find(key);
    if (it == st.cache.end()) it = st.cache.emplace(key, build(op, s)).first;
    Entry& e = it->second;
    // Bounds: every operand must lie inside the heap.
    size_t need[4] = {0, 0, 0, 0};
    switch (op) {
      case 0: need[0] = e.src.get_size(); need[1] = e.userWeights.get_size(); need[2] = s.bias ? e.bias.get_size() : 0; need[3] = e.dst.get_size(); break;
      case 1: need[0] = e.dst.get_size(); need[1] = e.userWeights.get_size(); need[2] = e.src.get_size(); break;
      case 2: need[0] = e.src.get_size(); need[1] = e.dst.get_size(); need[2] = e.userWeights.get_size(); break;
      case 3: need[0] = e.src.get_size(); need[1] = e.dst.get_size(); break;
      default: need[0] = e.src.get_size(); need[1] = e.dst.get_size(); need[2] = e.src.get_size(); break;
    }
    for (int i = 0; i < 4; i++) {
      if (need[i] == 0) continue;
      if (offs[i] < 0 || offs[i] + static_cast<double>(need[i]) > static_cast<double>(heapBytes)) return fail(env, "conv: operand outside the heap");
    }
    float* scratch = e.reorderWeights ? e.weightsScratch.data() : nullptr;
    if (op == 3) {
      e.conv.execute(st.strm, {{DNNL_ARG_SRC, memory(e.src, st.eng, at(offs[0]))}, {DNNL_ARG_DST, memory(e.dst, st.eng, at(offs[1]))}});
    } else if (op == 4) {
      memory ws(e.workspace, st.eng, e.workspaceData.data());
      e.poolForward.execute(st.strm, {{DNNL_ARG_SRC, memory(e.src, st.eng, at(offs[0]))},
                                      {DNNL_ARG_DST, memory(e.dst, st.eng, e.pooledScratch.data())}, {DNNL_ARG_WORKSPACE, ws}});
      e.conv.execute(st.strm, {{DNNL_ARG_DIFF_DST, memory(e.dst, st.eng, at(offs[1]))}, {DNNL_ARG_DIFF_SRC, memory(e.src, st.eng, at(offs[2]))},
                               {DNNL_ARG_WORKSPACE, ws}});
    } else if (op == 0 || op == 1) {
      memory user(e.userWeights, st.eng, at(offs[1]));
      memory w = user;
      if (e.reorderWeights) {
        w = memory(e.weights, st.eng, scratch);
        e.weightsReorder.execute(st.strm, {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, w}});
      }
      if (op == 0) {
        std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(e.src, st.eng, at(offs[0]))}, {DNNL_ARG_WEIGHTS, w},
                                             {DNNL_ARG_DST, memory(e.dst, st.eng, at(offs[3]))}};
        if (s.bias) args.emplace(DNNL_ARG_BIAS, memory(e.bias, st.eng, at(offs[2])));
        e.conv.execute(st.strm, args);
      } else {
        e.conv.execute(st.strm, {{DNNL_ARG_DIFF_DST, memory(e.dst, st.eng, at(offs[0]))}, {DNNL_ARG_WEIGHTS, w},
                                 {DNNL_ARG_DIFF_SRC, memory(e.src, st.eng, at(offs[2]))}});
      }
    } else {
      memory user(e.userWeights, st.eng, at(offs[2]));
      memory dw = e.reorderWeights ? memory(e.weights, st.eng, scratch) : user;
      e.conv.execute(st.strm, {{DNNL_ARG_SRC, memory(e.src, st.eng, at(offs[0]))}, {DNNL_ARG_DIFF_DST, memory(e.dst, st.eng, at(offs[1]))},
                               {DNNL_ARG_DIFF_WEIGHTS, dw}});
      if (e.reorderWeights) e.weightsReorder.execute(st.strm, {{DNNL_ARG_FROM, dw}, {DNNL_ARG_TO, user}});
    }
    st.strm.wait();
  } catch (const dnnl::error& err) {
    std::string msg = std::string("oneDNN: ") + err.what();
    return fail(env, msg.c_str());
  } catch (const std::exception& err) {
    return fail(env, err.what());
  }
  return nullptr;
}

// copyRows(heap, jobs): jobs is a Float64Array of [dst, dstStride, src, srcStride, rowBytes, rows] groups
// (bytes): strided row copies inside the heap, what Concat and SplitV are made of. memcpy, no oneDNN.
napi_value CopyRows(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char* heap = nullptr;
  size_t heapBytes = 0;
  if (!takeArgs(env, info, 2, argv, "copyRows(heap, jobs)") || !takeHeap(env, argv[0], &heap, &heapBytes, "copyRows")) return nullptr;
  napi_typedarray_type tt;
  size_t len = 0;
  void* jobsData = nullptr;
  if (napi_get_typedarray_info(env, argv[1], &tt, &len, &jobsData, nullptr, nullptr) != napi_ok || tt != napi_float64_array || len % 6 != 0)
    return fail(env, "copyRows: jobs must be a Float64Array of 6-tuples");
  const double* jobs = static_cast<const double*>(jobsData);
  const double limit = static_cast<double>(heapBytes);
  for (size_t j = 0; j < len; j += 6) {
    const double dst = jobs[j], dstStride = jobs[j + 1], src = jobs[j + 2], srcStride = jobs[j + 3], rowBytes = jobs[j + 4], rows = jobs[j + 5];
    if (rows <= 0 || rowBytes <= 0) continue;
    if (dst < 0 || src < 0 || dstStride < rowBytes || srcStride < rowBytes || dst + (rows - 1) * dstStride + rowBytes > limit ||
        src + (rows - 1) * srcStride + rowBytes > limit)
      return fail(env, "copyRows: a row lies outside the heap");
    const size_t n = static_cast<size_t>(rowBytes), ds = static_cast<size_t>(dstStride), ss = static_cast<size_t>(srcStride);
    char* d = heap + static_cast<size_t>(dst);
    const char* s = heap + static_cast<size_t>(src);
    if (ds == n && ss == n) {
      std::memmove(d, s, n * static_cast<size_t>(rows));
      continue;
    }
    for (size_t r = 0, nr = static_cast<size_t>(rows); r < nr; r++, d += ds, s += ss) std::memmove(d, s, n);
  }
  return nullptr;
}

// sumRows(heap, src, rows, cols, dst): dst[c] = sum over r of src[r * cols + c] (float32 in and out, byte
// offsets), accumulated in double: the bias gradients, i.e. Sum over all but the channel axis.
napi_value SumRows(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  char* heapData = nullptr;
  size_t heapBytes = 0;
  if (!takeArgs(env, info, 5, argv, "sumRows(heap, src, rows, cols, dst)") || !takeHeap(env, argv[0], &heapData, &heapBytes, "sumRows")) return nullptr;
  double src = 0, rows = 0, cols = 0, dst = 0;
  napi_get_value_double(env, argv[1], &src);
  napi_get_value_double(env, argv[2], &rows);
  napi_get_value_double(env, argv[3], &cols);
  napi_get_value_double(env, argv[4], &dst);
  const double limit = static_cast<double>(heapBytes);
  if (src < 0 || dst < 0 || rows < 0 || cols < 1 || src + rows * cols * 4 > limit || dst + cols * 4 > limit)
    return fail(env, "sumRows: operand outside the heap");
  const size_t nr = static_cast<size_t>(rows), nc = static_cast<size_t>(cols);
  const float* in = reinterpret_cast<const float*>(heapData + static_cast<size_t>(src));
  std::vector<double> acc(nc, 0.0);
  for (size_t r = 0; r < nr; r++, in += nc) {
    for (size_t c = 0; c < nc; c++) acc[c] += in[c];
  }
  float* out = reinterpret_cast<float*>(heapData + static_cast<size_t>(dst));
  for (size_t c = 0; c < nc; c++) out[c] = static_cast<float>(acc[c]);
  return nullptr;
}

napi_value Version(napi_env env, napi_callback_info) {
  const dnnl_version_t* v = dnnl_version();
  std::string text = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  napi_value out;
  napi_create_string_utf8(env, text.c_str(), text.size(), &out);
  return out;
}

}  // namespace

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "conv", NAPI_AUTO_LENGTH, Conv, nullptr, &fn);
  napi_set_named_property(env, exports, "conv", fn);
  napi_create_function(env, "sumRows", NAPI_AUTO_LENGTH, SumRows, nullptr, &fn);
  napi_set_named_property(env, exports, "sumRows", fn);
  napi_create_function(env, "copyRows", NAPI_AUTO_LENGTH, CopyRows, nullptr, &fn);
  napi_set_named_property(env, exports, "copyRows", fn);
  napi_create_function(env, "version", NAPI_AUTO_LENGTH, Version, nullptr, &fn);
  napi_set_named_property(env, exports, "version", fn);
  return exports;
}
