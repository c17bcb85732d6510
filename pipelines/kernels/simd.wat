;; Hand-written WebAssembly SIMD kernels that work in place on the tfjs-backend-wasm heap
;; (pipelines/kernels/simd.ts). The module imports the backend's own Memory, so every pointer
;; below is a tensor's byte offset in that heap and heap growth is followed automatically.
;;
;; Assembled by `npx tsx scripts/build-simd.ts` into simd-bytes.ts; edit this file, then rerun it
;; (test/kernels-simd.test.ts fails when the two drift apart).
(module
  (import "env" "memory" (memory 0))

  ;; out[i] = (x[i] > 0 && x[i] <= max) ? dy[i] : +0, for i in [0, n)
  ;; The Relu (max = +Inf) and Relu6 (max = 6) gradients: 0 is excluded and max included, as in
  ;; tfjs-core's step(x) and lessEqual(x, 6); NaN fails both compares, so NaN x gives 0.
  ;; dy is copied by its bits (masked with v128.and / selected as i32). out may alias dy or x.
  (func (export "relu_grad")
    (param $dy i32) (param $x i32) (param $out i32) (param $n i32) (param $max f32)
    (local $i i32)      ;; byte offset of the current element
    (local $end4 i32)   ;; byte offset where the 4-lane loop stops
    (local $end i32)    ;; byte offset of the end
    (local $maxv v128)
    (local $xv v128)
    (local $xs f32)
    (local.set $maxv (f32x4.splat (local.get $max)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $end4 (i32.and (local.get $end) (i32.const -16)))
    (block $done4
      (loop $lanes
        (br_if $done4 (i32.ge_u (local.get $i) (local.get $end4)))
        (local.set $xv (v128.load (i32.add (local.get $x) (local.get $i))))
        (v128.store
          (i32.add (local.get $out) (local.get $i))
          (v128.and
            (v128.load (i32.add (local.get $dy) (local.get $i)))
            (v128.and
              (f32x4.gt (local.get $xv) (v128.const f32x4 0 0 0 0))
              (f32x4.le (local.get $xv) (local.get $maxv)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $lanes)))
    ;; scalar tail: the last n mod 4 elements
    (block $done
      (loop $tail
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $xs (f32.load (i32.add (local.get $x) (local.get $i))))
        (i32.store
          (i32.add (local.get $out) (local.get $i))
          (select
            (i32.load (i32.add (local.get $dy) (local.get $i)))
            (i32.const 0)
            (i32.and
              (f32.gt (local.get $xs) (f32.const 0))
              (f32.le (local.get $xs) (local.get $max)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $tail))))

  ;; out[p*C + c] = x[p*C + c] * scale[c] + shift[c], for p in [0, n_pixels), c in [0, C)
  ;; A per-channel affine map over NHWC data (inference BatchNorm). Rounded as f32 mul then
  ;; f32 add (no fused multiply-add), so it equals Math.fround(Math.fround(x*s) + b) in JS.
  ;; out may alias x.
  (func (export "channel_affine")
    (param $x i32) (param $scale i32) (param $shift i32) (param $out i32)
    (param $np i32) (param $c i32)
    (local $row i32)    ;; bytes per pixel (C * 4)
    (local $row4 i32)   ;; bytes of the channels handled 4 at a time
    (local $base i32)   ;; byte offset of the current pixel
    (local $end i32)    ;; byte offset of the end of all pixels
    (local $j i32)      ;; byte offset of the channel within the pixel
    (local $k i32)
    (local.set $row (i32.shl (local.get $c) (i32.const 2)))
    (local.set $row4 (i32.and (local.get $row) (i32.const -16)))
    (local.set $end (i32.mul (local.get $np) (local.get $row)))
    (block $pixels_done
      (loop $pixels
        (br_if $pixels_done (i32.ge_u (local.get $base) (local.get $end)))
        (local.set $j (i32.const 0))
        (block $lanes_done
          (loop $lanes
            (br_if $lanes_done (i32.ge_u (local.get $j) (local.get $row4)))
            (local.set $k (i32.add (local.get $base) (local.get $j)))
            (v128.store
              (i32.add (local.get $out) (local.get $k))
              (f32x4.add
                (f32x4.mul
                  (v128.load (i32.add (local.get $x) (local.get $k)))
                  (v128.load (i32.add (local.get $scale) (local.get $j))))
                (v128.load (i32.add (local.get $shift) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 16)))
            (br $lanes)))
        ;; channels C mod 4 .. C of this pixel
        (block $tail_done
          (loop $tail
            (br_if $tail_done (i32.ge_u (local.get $j) (local.get $row)))
            (local.set $k (i32.add (local.get $base) (local.get $j)))
            (f32.store
              (i32.add (local.get $out) (local.get $k))
              (f32.add
                (f32.mul
                  (f32.load (i32.add (local.get $x) (local.get $k)))
                  (f32.load (i32.add (local.get $scale) (local.get $j))))
                (f32.load (i32.add (local.get $shift) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))
            (br $tail)))
        (local.set $base (i32.add (local.get $base) (local.get $row)))
        (br $pixels))))

  ;; The max-pool gradient over NHWC float32: for every window, dx[first max] += dy[window],
  ;; per channel. "First" is row-major over the window's in-bounds taps; the running max starts
  ;; at -Inf, so all-negative windows route to their largest value (wasm's own kernel started at
  ;; 0); a window wholly in the padding, or whose values are all NaN / -Inf, sends nothing.
  ;; dx must be zeroed by the caller. Channels run 4 at a time (compare + bitselect of the value
  ;; and its byte offset), then each lane's gradient is added at its argmax; C mod 4 are scalar.
  ;; The geometry is tf.backend_util.computePool2DInfo's (effective filter = dilated extent).
  (func (export "max_pool_grad")
    (param $x i32) (param $dy i32) (param $dx i32)
    (param $n i32) (param $h i32) (param $w i32) (param $c i32) (param $oh i32) (param $ow i32)
    (param $fh i32) (param $fw i32) (param $sh i32) (param $sw i32) (param $dh i32) (param $dw i32)
    (param $top i32) (param $left i32)
    (local $b i32) (local $i i32) (local $j i32) (local $r i32) (local $q i32)
    (local $row i32)     ;; bytes per pixel: C * 4
    (local $row4 i32)    ;; bytes of the channels handled 4 at a time
    (local $ch i32)      ;; byte offset of the channel within the pixel
    (local $xb i32)      ;; byte offset of image b in x
    (local $o i32)       ;; byte offset of the window's output pixel in dy
    (local $r0 i32) (local $c0 i32) (local $r1 i32) (local $c1 i32)
    (local $k i32)       ;; byte offset in x of the tap's channel ch
    (local $best v128) (local $at v128) (local $v v128) (local $m v128)
    (local $bs f32) (local $as i32) (local $vs f32) (local $lane i32)
    (local.set $row (i32.shl (local.get $c) (i32.const 2)))
    (local.set $row4 (i32.and (local.get $row) (i32.const -16)))
    (local.set $b (i32.const 0))
    (block $images_done (loop $images
      (br_if $images_done (i32.ge_u (local.get $b) (local.get $n)))
      (local.set $xb (i32.mul (i32.mul (i32.mul (local.get $b) (local.get $h)) (local.get $w)) (local.get $row)))
      (local.set $i (i32.const 0))
      (block $rows_done (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $i) (local.get $oh)))
        (local.set $r0 (i32.sub (i32.mul (local.get $i) (local.get $sh)) (local.get $top)))
        (local.set $r1 (i32.add (local.get $r0) (local.get $fh)))
        (local.set $j (i32.const 0))
        (block $cols_done (loop $cols
          (br_if $cols_done (i32.ge_u (local.get $j) (local.get $ow)))
          (local.set $c0 (i32.sub (i32.mul (local.get $j) (local.get $sw)) (local.get $left)))
          (local.set $c1 (i32.add (local.get $c0) (local.get $fw)))
          (local.set $o (i32.mul
            (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $oh)) (local.get $i)) (local.get $ow)) (local.get $j))
            (local.get $row)))
          ;; 4 channels at a time
          (local.set $ch (i32.const 0))
          (block $lanes_done (loop $lanes
            (br_if $lanes_done (i32.ge_u (local.get $ch) (local.get $row4)))
            (local.set $best (v128.const f32x4 -inf -inf -inf -inf))
            (local.set $at (v128.const i32x4 -1 -1 -1 -1))
            (local.set $r (local.get $r0))
            (block $taps_r_done (loop $taps_r
              (br_if $taps_r_done (i32.ge_s (local.get $r) (local.get $r1)))
              (if (i32.and (i32.ge_s (local.get $r) (i32.const 0)) (i32.lt_s (local.get $r) (local.get $h)))
                (then
                  (local.set $q (local.get $c0))
                  (block $taps_q_done (loop $taps_q
                    (br_if $taps_q_done (i32.ge_s (local.get $q) (local.get $c1)))
                    (if (i32.and (i32.ge_s (local.get $q) (i32.const 0)) (i32.lt_s (local.get $q) (local.get $w)))
                      (then
                        (local.set $k (i32.add
                          (i32.add (local.get $xb) (i32.mul (i32.add (i32.mul (local.get $r) (local.get $w)) (local.get $q)) (local.get $row)))
                          (local.get $ch)))
                        (local.set $v (v128.load (i32.add (local.get $x) (local.get $k))))
                        ;; strictly greater: the first maximum wins ties; NaN never wins
                        (local.set $m (f32x4.gt (local.get $v) (local.get $best)))
                        (local.set $best (v128.bitselect (local.get $v) (local.get $best) (local.get $m)))
                        (local.set $at (v128.bitselect
                          (i32x4.add (i32x4.splat (local.get $k)) (v128.const i32x4 0 4 8 12))
                          (local.get $at) (local.get $m)))))
                    (local.set $q (i32.add (local.get $q) (local.get $dw)))
                    (br $taps_q)))))
              (local.set $r (i32.add (local.get $r) (local.get $dh)))
              (br $taps_r)))
            ;; scatter the 4 lanes: dx[at] += dy[o + ch + 4·lane]
            (call $scatter (local.get $dx) (i32x4.extract_lane 0 (local.get $at)) (i32.add (local.get $dy) (i32.add (local.get $o) (local.get $ch))))
            (call $scatter (local.get $dx) (i32x4.extract_lane 1 (local.get $at)) (i32.add (local.get $dy) (i32.add (local.get $o) (i32.add (local.get $ch) (i32.const 4)))))
            (call $scatter (local.get $dx) (i32x4.extract_lane 2 (local.get $at)) (i32.add (local.get $dy) (i32.add (local.get $o) (i32.add (local.get $ch) (i32.const 8)))))
            (call $scatter (local.get $dx) (i32x4.extract_lane 3 (local.get $at)) (i32.add (local.get $dy) (i32.add (local.get $o) (i32.add (local.get $ch) (i32.const 12)))))
            (local.set $ch (i32.add (local.get $ch) (i32.const 16)))
            (br $lanes)))
          ;; channels C mod 4 .. C, one at a time
          (block $tail_done (loop $tail
            (br_if $tail_done (i32.ge_u (local.get $ch) (local.get $row)))
            (local.set $bs (f32.const -inf))
            (local.set $as (i32.const -1))
            (local.set $r (local.get $r0))
            (block $tr_done (loop $tr
              (br_if $tr_done (i32.ge_s (local.get $r) (local.get $r1)))
              (if (i32.and (i32.ge_s (local.get $r) (i32.const 0)) (i32.lt_s (local.get $r) (local.get $h)))
                (then
                  (local.set $q (local.get $c0))
                  (block $tq_done (loop $tq
                    (br_if $tq_done (i32.ge_s (local.get $q) (local.get $c1)))
                    (if (i32.and (i32.ge_s (local.get $q) (i32.const 0)) (i32.lt_s (local.get $q) (local.get $w)))
                      (then
                        (local.set $k (i32.add
                          (i32.add (local.get $xb) (i32.mul (i32.add (i32.mul (local.get $r) (local.get $w)) (local.get $q)) (local.get $row)))
                          (local.get $ch)))
                        (local.set $vs (f32.load (i32.add (local.get $x) (local.get $k))))
                        (if (f32.gt (local.get $vs) (local.get $bs))
                          (then (local.set $bs (local.get $vs)) (local.set $as (local.get $k))))))
                    (local.set $q (i32.add (local.get $q) (local.get $dw)))
                    (br $tq)))))
              (local.set $r (i32.add (local.get $r) (local.get $dh)))
              (br $tr)))
            (call $scatter (local.get $dx) (local.get $as) (i32.add (local.get $dy) (i32.add (local.get $o) (local.get $ch))))
            (local.set $ch (i32.add (local.get $ch) (i32.const 4)))
            (br $tail)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $cols)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $images))))

  ;; dx[at] += *dy_at, where at is a byte offset into x (the same layout as dx); nothing when at < 0
  (func $scatter (param $dx i32) (param $at i32) (param $dy_at i32)
    (local $p i32)
    (if (i32.ge_s (local.get $at) (i32.const 0))
      (then
        (local.set $p (i32.add (local.get $dx) (local.get $at)))
        (f32.store (local.get $p) (f32.add (f32.load (local.get $p)) (f32.load (local.get $dy_at)))))))

  ;; dst[b][j][i] = src[b][i][j] for b < batch, i < rows, j < cols: a batch of row-major
  ;; [rows, cols] matrices of 4-byte elements transposed, copied by their bits (float32 and int32
  ;; alike), in 8 × 8 tiles so that both the reads and the writes stay in cache. wasm's own
  ;; Transpose and its matMul with a transposed operand (the gradients of every matMul) are both
  ;; an order of magnitude slower than this copy plus the plain matMul.
  (func (export "transpose_last2")
    (param $src i32) (param $dst i32) (param $batch i32) (param $rows i32) (param $cols i32)
    (local $b i32) (local $i0 i32) (local $j0 i32) (local $i i32) (local $j i32)
    (local $i1 i32) (local $j1 i32) (local $plane i32) (local $sb i32) (local $db i32)
    (local.set $plane (i32.shl (i32.mul (local.get $rows) (local.get $cols)) (i32.const 2)))
    (block $batch_done (loop $batches
      (br_if $batch_done (i32.ge_u (local.get $b) (local.get $batch)))
      (local.set $sb (i32.add (local.get $src) (i32.mul (local.get $b) (local.get $plane))))
      (local.set $db (i32.add (local.get $dst) (i32.mul (local.get $b) (local.get $plane))))
      (local.set $i0 (i32.const 0))
      (block $rows_done (loop $row_tiles
        (br_if $rows_done (i32.ge_u (local.get $i0) (local.get $rows)))
        (local.set $i1 (select (local.get $rows) (i32.add (local.get $i0) (i32.const 8))
          (i32.lt_u (local.get $rows) (i32.add (local.get $i0) (i32.const 8)))))
        (local.set $j0 (i32.const 0))
        (block $cols_done (loop $col_tiles
          (br_if $cols_done (i32.ge_u (local.get $j0) (local.get $cols)))
          (local.set $j1 (select (local.get $cols) (i32.add (local.get $j0) (i32.const 8))
            (i32.lt_u (local.get $cols) (i32.add (local.get $j0) (i32.const 8)))))
          (local.set $i (local.get $i0))
          (block $tile_rows_done (loop $tile_rows
            (br_if $tile_rows_done (i32.ge_u (local.get $i) (local.get $i1)))
            (local.set $j (local.get $j0))
            (block $tile_cols_done (loop $tile_cols
              (br_if $tile_cols_done (i32.ge_u (local.get $j) (local.get $j1)))
              (i32.store
                (i32.add (local.get $db) (i32.shl (i32.add (i32.mul (local.get $j) (local.get $rows)) (local.get $i)) (i32.const 2)))
                (i32.load
                  (i32.add (local.get $sb) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $cols)) (local.get $j)) (i32.const 2)))))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br $tile_cols)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $tile_rows)))
          (local.set $j0 (i32.add (local.get $j0) (i32.const 8)))
          (br $col_tiles)))
        (local.set $i0 (i32.add (local.get $i0) (i32.const 8)))
        (br $row_tiles)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $batches))))
)
