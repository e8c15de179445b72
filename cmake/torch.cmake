# Finds libtorch for the model (find_package(Torch): TORCH_LIBRARIES, TORCH_CXX_FLAGS).
#
# Default: the first libtorch CMake finds (Debian's libtorch-dev 1.13, CPU only).
# -DSPECDEC_TORCH_PYTHON=<python>: the torch installed for that interpreter instead, e.g. PyPI's
# CUDA wheel in the venv of deploy/install-torch-cuda.sh (build-cuda/torch-venv/bin/python) or
# a GPU machine's own python3 (docs/gpu.md). Its torch.utils.cmake_prefix_path goes first in
# CMAKE_PREFIX_PATH. A CUDA build of torch makes TorchConfig look for the CUDA toolkit (nvcc,
# cudart, ...); set CUDAToolkit_ROOT (or put nvcc on PATH) when it is not in /usr/local/cuda.
# No CUDA code of ours is compiled: the toolkit only satisfies TorchConfig's checks.
set(SPECDEC_TORCH_PYTHON "" CACHE FILEPATH
    "Build against the torch of this Python interpreter (docs/gpu.md); empty: find_package(Torch)")

if(SPECDEC_TORCH_PYTHON)
  execute_process(
    COMMAND ${SPECDEC_TORCH_PYTHON} -c
      "import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(torch.__version__); print(torch.version.cuda or ''); print(int(torch.compiled_with_cxx11_abi()))"
    OUTPUT_VARIABLE _specdec_torch_info
    ERROR_VARIABLE _specdec_torch_error
    RESULT_VARIABLE _specdec_torch_rc
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _specdec_torch_rc EQUAL 0)
    message(FATAL_ERROR "SPECDEC_TORCH_PYTHON=${SPECDEC_TORCH_PYTHON} cannot import torch:\n"
                        "${_specdec_torch_error}")
  endif()
  string(REPLACE "\n" ";" _specdec_torch_info "${_specdec_torch_info}")
  list(GET _specdec_torch_info 0 _specdec_torch_prefix)
  list(GET _specdec_torch_info 1 SPECDEC_TORCH_VERSION)
  list(GET _specdec_torch_info 2 SPECDEC_TORCH_CUDA)
  list(GET _specdec_torch_info 3 _specdec_torch_cxx11_abi)
  message(STATUS "specdec: torch ${SPECDEC_TORCH_VERSION} (CUDA: ${SPECDEC_TORCH_CUDA}, "
                 "C++11 ABI: ${_specdec_torch_cxx11_abi}) from ${SPECDEC_TORCH_PYTHON}")
  if(NOT _specdec_torch_cxx11_abi)
    # Every other C++ library here (Abseil, GoogleTest, ICU; gRPC and protobuf) is Debian's,
    # built with the C++11 ABI: std::string crosses their interfaces, so one binary cannot mix.
    message(FATAL_ERROR "torch ${SPECDEC_TORCH_VERSION} was built with the pre-C++11 ABI "
      "(_GLIBCXX_USE_CXX11_ABI=0); the project's other C++ libraries use the C++11 ABI. Use a "
      "torch wheel of 2.7 or later (deploy/install-torch-cuda.sh pins one).")
  endif()
  # The torch package folder too, so that TorchConfig's find_library(c10 ...) finds its lib/
  # before a system libtorch's (Debian's libc10.so in /usr/lib would win over its PATHS hint).
  get_filename_component(SPECDEC_TORCH_ROOT ${_specdec_torch_prefix}/../.. ABSOLUTE)
  list(PREPEND CMAKE_PREFIX_PATH ${SPECDEC_TORCH_ROOT} ${_specdec_torch_prefix})
  # PyPI's libtorch exports the std::filesystem functions its toolchain linked in statically
  # (pytorch issue 133437), and a binary that lists libtorch before libstdc++ binds its own
  # std::filesystem calls to those copies: std::filesystem::remove_all then crashes (2.11).
  # libstdc++ first among every binary's libraries keeps them in libstdc++.
  add_link_options("LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")
  if(SPECDEC_TORCH_CUDA)
    # Architectures TorchConfig's CUDA checks record (no CUDA code of ours is compiled): Hopper
    # (H100, H200) by default, instead of probing for a GPU that a build machine lacks.
    if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
      set(TORCH_CUDA_ARCH_LIST "9.0" CACHE STRING "CUDA architectures (docs/gpu.md)")
    endif()
    # TorchConfig enables the CUDA language and finds the toolkit (nvcc, cudart, nvrtc) whose
    # version must be the one nvcc reports; /usr/local/cuda when nvcc is not on PATH.
    find_program(_specdec_nvcc nvcc)
    if(NOT _specdec_nvcc AND NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND
       EXISTS /usr/local/cuda/bin/nvcc)
      set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
      set(CUDA_TOOLKIT_ROOT_DIR /usr/local/cuda)
      set(_specdec_nvcc /usr/local/cuda/bin/nvcc)
    endif()
    # Without a toolkit TorchConfig cannot be used at all; the package's own libraries (which
    # bring the CUDA runtime, cuBLAS and cuDNN as NVIDIA's wheels) are enough to link against.
    if(_specdec_nvcc)
      set(_specdec_toolkit_default OFF)
    else()
      set(_specdec_toolkit_default ON)
    endif()
    option(SPECDEC_TORCH_WITHOUT_TOOLKIT
           "Link the torch package's libraries directly instead of TorchConfig (no nvcc needed)"
           ${_specdec_toolkit_default})
  endif()
endif()

if(SPECDEC_TORCH_PYTHON AND SPECDEC_TORCH_CUDA AND SPECDEC_TORCH_WITHOUT_TOOLKIT)
  # What TorchConfig's targets amount to for a shared CUDA torch: its headers, the C++11 ABI, and
  # libtorch, libtorch_cpu, libc10 plus libtorch_cuda and libc10_cuda linked even though no
  # symbol of theirs is referenced (their static initialisers register the CUDA kernels).
  # -rpath-link lets the linker find the NVIDIA wheels' libraries that libtorch_cuda needs.
  set(_lib ${SPECDEC_TORCH_ROOT}/lib)
  file(GLOB _specdec_nvidia_libs LIST_DIRECTORIES true ${SPECDEC_TORCH_ROOT}/../nvidia/*/lib)
  string(REPLACE ";" ":" _specdec_nvidia_libs "${_specdec_nvidia_libs}")
  add_library(specdec_torch INTERFACE IMPORTED GLOBAL)
  set_target_properties(specdec_torch PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES
      "${SPECDEC_TORCH_ROOT}/include;${SPECDEC_TORCH_ROOT}/include/torch/csrc/api/include"
    INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=1"
    INTERFACE_LINK_LIBRARIES
      "${_lib}/libtorch.so;${_lib}/libtorch_cpu.so;${_lib}/libc10.so;-Wl,--no-as-needed,${_lib}/libtorch_cuda.so,${_lib}/libc10_cuda.so,--as-needed;-Wl,-rpath-link,${_specdec_nvidia_libs}:${_lib};-Wl,-rpath,${_lib}")
  set(TORCH_LIBRARIES specdec_torch)
  set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=1")
  message(STATUS "specdec: no CUDA toolkit: linking ${_lib} directly (SPECDEC_TORCH_WITHOUT_TOOLKIT)")
  return()
endif()

find_package(Torch REQUIRED)

if(SPECDEC_TORCH_PYTHON)
  # Every torch library must be the package's own: one from a system libtorch would mix versions.
  foreach(_lib ${TORCH_LIBRARIES})
    if(_lib MATCHES "/lib(torch|c10)[^/]*\\.so" AND NOT _lib MATCHES "^${SPECDEC_TORCH_ROOT}/")
      message(FATAL_ERROR "TorchConfig picked ${_lib}, not the library of ${SPECDEC_TORCH_ROOT}")
    endif()
  endforeach()
  message(STATUS "specdec: TORCH_LIBRARIES = ${TORCH_LIBRARIES}")
endif()
