// main.cpp: postern-storectl, the store's admin tool (store/tools/storectl.hpp has it all).
#include "store/tools/storectl.hpp"

int main(int argc, char** argv) { return store::tools::storectl_main(argc, argv); }
