#![no_main]
//! See `payroute::fuzzing::routes_yaml`: the seeds give their keys by `env`, set here from the
//! sandbox's keys.

libfuzzer_sys::fuzz_target!(init: {
    for (var, text) in [
        ("PAYROUTE_FUZZ_ALIPAY_APP_PRIVATE", include_str!("../../sandbox/keys/alipay_app_private.pem")),
        ("PAYROUTE_FUZZ_ALIPAY_PUBLIC", include_str!("../../sandbox/keys/alipay_public.pem")),
        ("PAYROUTE_FUZZ_WECHAT_MERCHANT_PRIVATE", include_str!("../../sandbox/keys/wechat_merchant_private.pem")),
        ("PAYROUTE_FUZZ_WECHAT_APIV3", include_str!("../../sandbox/keys/wechat_apiv3.key")),
        ("PAYROUTE_FUZZ_WECHATPAY_PUBLIC", include_str!("../../sandbox/keys/wechatpay_public.pem")),
        ("PAYROUTE_FUZZ_PINGPP_SECRET", include_str!("../../sandbox/keys/pingpp_secret.key")),
        ("PAYROUTE_FUZZ_PINGPP_MERCHANT_PRIVATE", include_str!("../../sandbox/keys/pingpp_merchant_private.pem")),
        ("PAYROUTE_FUZZ_PINGPP_PUBLIC", include_str!("../../sandbox/keys/pingpp_public.pem")),
    ] {
        std::env::set_var(var, text);
    }
}, |data: &[u8]| payroute::fuzzing::routes_yaml(data));
