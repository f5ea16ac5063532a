// A plugin root module under the host's module name whose layout differs from the host's
// (`new_provider` takes other arguments). Shared by the abi-mismatch, old-api, abi-newer-minor and abi-next-major test plugins,
// which differ only in the plugin ABI version they declare.

use abi_stable::{
    export_root_module, library::RootModule, prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings, std_types::RString, StableAbi,
};

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = OtherModuleRef)))]
#[sabi(missing_field(panic))]
pub struct OtherModule {
    pub manifest: extern "C" fn() -> RString,
    #[sabi(last_prefix_field)]
    pub new_provider: extern "C" fn(u64) -> u64,
}

impl RootModule for OtherModuleRef {
    abi_stable::declare_root_module_statics! {OtherModuleRef}
    const BASE_NAME: &'static str = "portcullis_plugin";
    const NAME: &'static str = "portcullis_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(crate::API_VERSION);
}

extern "C" fn manifest() -> RString {
    RString::from(crate::NAME)
}

extern "C" fn new_provider(x: u64) -> u64 {
    x
}

#[export_root_module]
pub fn root() -> OtherModuleRef {
    OtherModule {
        manifest,
        new_provider,
    }
    .leak_into_prefix()
}
