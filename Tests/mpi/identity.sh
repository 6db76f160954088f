#!/usr/bin/env bash
# Data-parallel training under mpirun gives the model one process gives, byte for byte.
# Usage: Tests/mpi/identity.sh NERVE_BINARY OUTPUT_DIR
# For each case: one process, then `mpirun -np 2` and `-np 3` (each rank with 1 thread, and one
# run with 2 threads per rank), saved models compared with cmp.
set -euo pipefail
nerve=$1 out=$2
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe --bind-to none)
failed=0

check() { # name, then the train arguments
  local name=$1; shift
  "$nerve" train "$@" --threads 2 --quiet --save "$out/$name-1.safetensors" > "$out/$name-1.log"
  for run in "2 1" "3 1" "2 2"; do
    set -- "$@"
    local n=${run% *} t=${run#* }
    "${mpi[@]}" -np "$n" "$nerve" train "$@" --threads "$t" --quiet --save "$out/$name-np$n-t$t.safetensors" \
      > "$out/$name-np$n-t$t.log" 2>&1
    if cmp -s "$out/$name-1.safetensors" "$out/$name-np$n-t$t.safetensors"; then
      echo "ok: $name, $n ranks x $t threads: model byte-identical to one process"
    else
      echo "FAILED: $name, $n ranks x $t threads: model differs from one process"; failed=1
    fi
  done
}

# Plain SGD fused into backward (the parameters travel along the ranks).
check mlp-sgd --config examples/lab-a-mlp-mse.toml --subset 2000 --epochs 2
# Momentum (gradients summed along the ranks), batch 100: ranks' shares of 50 and 33 rows
# cross the size where the dense kernels change method.
check mlp-momentum --config examples/lab-b-relu-momentum.toml --subset 1000 --epochs 1 --layers 784,128,64,10 --batch-size 100
# A CNN with batch norm and dropout (the previous Lab H network; Adam, cosine schedule).
check cnn-batchnorm-dropout --config Tests/mpi/batchnorm-dropout.toml --subset 500 --epochs 1
# Lab E: one process makes the first convolution's sums through the batch norm and the pool in
# one call, slice by slice of the batch; the ranks from the norm's stored gradient, whole slices each.
check lab-e --config examples/lab-e-cnn.toml --subset 500 --epochs 1
# The fast recipe: Adam fused into dense layers, batch 256, one-cycle schedule.
check cnn-fast --config examples/fast-99.toml --subset 700 --epochs 1
# The fast recipe in batches of 3,000: one process runs each in chunks (of 1,880 images, whole
# slices of the first convolution's pooled gradient sums), the ranks their shares in one pass.
check cnn-fast-chunked --config examples/fast-99.toml --subset 6000 --batch-size 3000 --epochs 1
# A convolution with a 3x3 output in batches of 20: the ranks' shares are few enough rows for
# the kernels' other method, which they must not take.
check cnn-small-maps --config Tests/mpi/small-maps.toml --subset 400
exit $failed
