// Data only (no code runs from here): compiled with the avx2 level's CPU, so the compiler's predefined
// feature macros give the list the start-up check tests the running CPU against.
#include "CPTFeaturesAVX2.h"

const char pt_level_features_avx2[] =
#include "../CPTSupport/include/pt_feature_list.inc"
;
