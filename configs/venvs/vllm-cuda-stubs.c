/* CPU stand-ins for the CUDA-only symbols that PyPI's CUDA-built torchvision/torchaudio extensions link
 * against (libc10_cuda.so). With a CPU-only torch no CUDA kernel is ever dispatched, so none of these is
 * reached; if one ever is, it aborts with its name instead of misbehaving. */
#include <stdio.h>
#include <stdlib.h>

#define STUB(sym) void sym(void) { fprintf(stderr, "CUDA stub called: %s\n", #sym); abort(); }

void *_ZN3c104cuda20CUDACachingAllocator9allocatorE = 0; /* c10::cuda::CUDACachingAllocator::allocator */

/* c10::cuda / at::cuda (torchvision _C.so) */
STUB(_ZN2at4cuda26getCurrentDevicePropertiesEv)
STUB(_ZN3c104cuda12device_countEv)
STUB(_ZN3c104cuda14ExchangeDeviceEa)
STUB(_ZN3c104cuda14MaybeSetDeviceEa)
STUB(_ZN3c104cuda17getStreamFromPoolEba)
STUB(_ZN3c104cuda17getStreamFromPoolEia)
STUB(_ZN3c104cuda20getCurrentCUDAStreamEa)
STUB(_ZN3c104cuda20getDefaultCUDAStreamEa)
STUB(_ZN3c104cuda20setCurrentCUDAStreamENS0_10CUDAStreamE)
STUB(_ZN3c104cuda29c10_cuda_check_implementationEiPKcS2_jb)
STUB(_ZN3c104cuda9GetDeviceEPa)
STUB(_ZN3c104cuda9SetDeviceEab)
STUB(_ZNK3c104cuda10CUDAStream11synchronizeEv)
STUB(_ZNK3c104cuda10CUDAStream5queryEv)
STUB(_ZNK3c104cuda10CUDAStream6streamEv)

/* torch stable C shim (torchaudio) */
STUB(aoti_torch_get_current_cuda_stream)
STUB(torch_c10_cuda_check_msg)
STUB(torch_c10_cuda_free_error_msg)
STUB(torch_cuda_stream_synchronize)
STUB(torch_get_cuda_stream_from_pool)
STUB(torch_set_current_cuda_stream)
