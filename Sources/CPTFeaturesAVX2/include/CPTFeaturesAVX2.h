// The features the compiler may use when building the avx2 level (see pt_feature_list.inc).
extern const char pt_level_features_avx2[];
