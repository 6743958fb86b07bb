# Sourced by install_caffe.sh and check_cuda_build.sh: where the CUDA toolkit is.
#
# toolkit_of_nvcc NVCC: the toolkit folder that holds this nvcc. nvcc names its own folder
# in its --dryrun output (_HERE_): PATH may hold a wrapper script, or a symlink from
# /usr/bin, instead of the real nvcc.
toolkit_of_nvcc() {
  local here
  here="$("$1" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -n1)"
  dirname "${here:-$(dirname "$(readlink -f "$1")")}"
}
